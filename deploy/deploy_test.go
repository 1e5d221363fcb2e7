// Package deploy holds the tests of the deployment files: the compose file is
// loaded with compose-go (the library behind `docker compose`), the Helm chart
// is rendered with Helm's Go SDK and every object it renders is decoded
// strictly into its Kubernetes API type, so an unknown or misspelt field fails
// here instead of at `kubectl apply`. It is a module of its own so that Helm,
// the Kubernetes API types and compose-go stay out of the service's go.mod.
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// ---- compose ----

func loadCompose(t *testing.T, env ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"},
		cli.WithWorkingDirectory("."), cli.WithEnv(env), cli.WithInterpolation(true), cli.WithConsistency(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("compose.yaml has no service %s: %v", name, err)
	}
	return s
}

func envOf(s types.ServiceConfig, key string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return ""
}

func TestComposeDescribesTheCluster(t *testing.T) {
	p := loadCompose(t)

	// Three NATS nodes with JetStream, each routed to the two others.
	for _, name := range []string{"nats1", "nats2", "nats3"} {
		s := service(t, p, name)
		cmd := strings.Join(s.Command, " ")
		for _, want := range []string{"--js", "--cluster_name connreg", "--name " + name, "--routes"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("%s: command %q lacks %q", name, cmd, want)
			}
		}
		for _, other := range []string{"nats1", "nats2", "nats3"} {
			if other != name && !strings.Contains(cmd, "nats://"+other+":6222") {
				t.Errorf("%s: no route to %s", name, other)
			}
		}
		if s.HealthCheck == nil {
			t.Errorf("%s: no health check (the registry waits for it)", name)
		}
	}

	// A three-member replica set, initiated once by an init service.
	for _, name := range []string{"mongo1", "mongo2", "mongo3"} {
		if cmd := strings.Join(service(t, p, name).Command, " "); !strings.Contains(cmd, "--replSet rs0") {
			t.Errorf("%s: not started as a member of rs0: %q", name, cmd)
		}
	}
	initCmd := strings.Join(service(t, p, "mongo-init").Command, " ")
	for _, m := range []string{"mongo1:27017", "mongo2:27017", "mongo3:27017"} {
		if !strings.Contains(initCmd, "rs.initiate") || !strings.Contains(initCmd, m) {
			t.Errorf("mongo-init does not initiate the replica set with %s", m)
		}
	}

	// Vault, and an init step that enables transit and creates the derived key.
	vinit := strings.Join(service(t, p, "vault-init").Command, " ")
	for _, want := range []string{"secrets enable transit", "transit/keys/connections", "derived=true"} {
		if !strings.Contains(vinit, want) {
			t.Errorf("vault-init lacks %q", want)
		}
	}

	// Two API replicas without projector, two projectors, all read-only and
	// non-root, waiting for the initialisations.
	for _, name := range []string{"api1", "api2", "projector1", "projector2"} {
		s := service(t, p, name)
		if !s.ReadOnly || s.User != "65532:65532" {
			t.Errorf("%s: read_only=%t user=%q, want a read-only root filesystem and the nonroot user", name, s.ReadOnly, s.User)
		}
		if s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s: not built from deploy/Dockerfile", name)
		}
		for _, dep := range []string{"mongo-init", "vault-init", "nats1"} {
			if _, ok := s.DependsOn[dep]; !ok {
				t.Errorf("%s: does not wait for %s", name, dep)
			}
		}
		if envOf(s, "STREAM_REPLICAS") != "3" || envOf(s, "ENV") != "production" {
			t.Errorf("%s: STREAM_REPLICAS=%q ENV=%q, want 3 and production", name, envOf(s, "STREAM_REPLICAS"), envOf(s, "ENV"))
		}
		for _, n := range []string{"nats1:4222", "nats2:4222", "nats3:4222"} {
			if !strings.Contains(envOf(s, "NATS_URL"), n) {
				t.Errorf("%s: NATS_URL does not list %s", name, n)
			}
		}
		if !strings.Contains(envOf(s, "MONGO_URI"), "replicaSet=rs0") {
			t.Errorf("%s: MONGO_URI does not name the replica set", name)
		}
	}
	for _, name := range []string{"api1", "api2"} {
		if v := envOf(service(t, p, name), "PROJECTOR"); v != "off" {
			t.Errorf("%s: PROJECTOR=%q, want off", name, v)
		}
	}
	for _, name := range []string{"projector1", "projector2"} {
		if e := service(t, p, name).Entrypoint; !slices.Equal(e, []string{"/projector"}) {
			t.Errorf("%s: entrypoint %v, want /projector", name, e)
		}
	}

	// The way in: one port, on loopback only.
	proxy := service(t, p, "proxy")
	if len(proxy.Ports) != 1 || proxy.Ports[0].HostIP != "127.0.0.1" || proxy.Ports[0].Published != "8080" {
		t.Errorf("proxy ports %+v, want 127.0.0.1:8080", proxy.Ports)
	}
	if cmd := strings.Join(proxy.Command, " "); !strings.Contains(cmd, "api1:8080") || !strings.Contains(cmd, "api2:8080") {
		t.Errorf("the proxy does not reach both API replicas: %q", cmd)
	}
}

// TestComposeSecretsAreOverridable: the development defaults are the only
// secrets in the file, labelled as such, and the environment replaces them.
func TestComposeSecretsAreOverridable(t *testing.T) {
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, def := range []string{"dev-only-nats-password", "dev-only-root-token"} {
		if !strings.Contains(string(raw), def) {
			t.Errorf("compose.yaml lacks the labelled development default %s", def)
		}
	}
	if !strings.Contains(string(raw), "DEVELOPMENT DEFAULT") {
		t.Error("compose.yaml does not label its development defaults")
	}
	p := loadCompose(t, "CONNREG_NATS_PASSWORD=from-env", "VAULT_DEV_ROOT_TOKEN=token-from-env")
	api := service(t, p, "api1")
	if !strings.Contains(envOf(api, "NATS_URL"), "connreg:from-env@") || envOf(api, "VAULT_TOKEN") != "token-from-env" {
		t.Errorf("the environment does not replace the development secrets: NATS_URL=%q", envOf(api, "NATS_URL"))
	}
	if strings.Contains(envOf(api, "NATS_URL"), "dev-only") {
		t.Error("a development default survived an override")
	}
}

// ---- image ----

func TestDockerfileBuildsStaticNonRootImage(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	stages := regexp.MustCompile(`(?m)^FROM `).FindAllStringIndex(df, -1)
	if len(stages) < 2 {
		t.Fatalf("the Dockerfile has %d stages, want a build stage and a final stage", len(stages))
	}
	final := df[stages[len(stages)-1][0]:]
	for _, want := range []string{"CGO_ENABLED=0", "-X github.com/connreg/registry/internal/buildinfo.Version=${VERSION}", "./cmd/api", "./cmd/projector"} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	for _, want := range []string{"distroless/static", ":nonroot", "USER 65532", "/out/api", "/out/projector"} {
		if !strings.Contains(final, want) {
			t.Errorf("the final stage lacks %q", want)
		}
	}
	// The -X flag only works while the variable exists, as a string.
	src, err := os.ReadFile("../internal/buildinfo/buildinfo.go")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^var Version = "dev"$`).Match(src) {
		t.Error(`internal/buildinfo no longer declares var Version = "dev", which the Dockerfile stamps with -X`)
	}
}

// ---- Helm chart ----

const chartDir = "helm/connreg"

// render renders the chart as `helm template` would, with the values files
// given (later ones override earlier ones).
func render(t *testing.T, valueFiles ...string) map[string]string {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("chart does not load: %v", err)
	}
	if err := ch.Validate(); err != nil {
		t.Fatalf("chart metadata: %v", err)
	}
	vals := map[string]any{}
	for _, f := range valueFiles {
		v, err := chartutil.ReadValuesFile(filepath.Join(chartDir, f))
		if err != nil {
			t.Fatal(err)
		}
		vals = chartutil.CoalesceTables(v.AsMap(), vals)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"}
	if ch.Metadata.KubeVersion != "" && !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		t.Fatalf("the chart's kubeVersion %q excludes Kubernetes %s", ch.Metadata.KubeVersion, caps.KubeVersion.String())
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "connreg", Namespace: "registry", IsInstall: true}, caps)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatalf("chart does not render: %v", err)
	}
	return out
}

// objects is what a rendering holds, decoded into the Kubernetes types.
type objects struct {
	deployments map[string]*appsv1.Deployment
	services    []*corev1.Service
	ingresses   []*networkingv1.Ingress
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	accounts    []*corev1.ServiceAccount
	kinds       []string
}

// decodeStrict decodes one object; a field its type does not have fails.
func decodeStrict(t *testing.T, name string, doc []byte, into any) {
	t.Helper()
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatalf("%s: not YAML: %v", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("%s: does not decode strictly into %T: %v\n%s", name, into, err, doc)
	}
}

func decodeAll(t *testing.T, rendered map[string]string) objects {
	t.Helper()
	o := objects{deployments: map[string]*appsv1.Deployment{}}
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, file := range names {
		if !strings.HasSuffix(file, ".yaml") {
			continue // NOTES.txt
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(rendered[file], -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			name := fmt.Sprintf("%s#%d", file, i)
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			o.kinds = append(o.kinds, head.Kind)
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				decodeStrict(t, name, []byte(doc), d)
				o.deployments[d.Name] = d
			case "v1 Service":
				s := &corev1.Service{}
				decodeStrict(t, name, []byte(doc), s)
				o.services = append(o.services, s)
			case "networking.k8s.io/v1 Ingress":
				in := &networkingv1.Ingress{}
				decodeStrict(t, name, []byte(doc), in)
				o.ingresses = append(o.ingresses, in)
			case "autoscaling/v2 HorizontalPodAutoscaler":
				h := &autoscalingv2.HorizontalPodAutoscaler{}
				decodeStrict(t, name, []byte(doc), h)
				o.hpas = append(o.hpas, h)
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				decodeStrict(t, name, []byte(doc), p)
				o.pdbs = append(o.pdbs, p)
			case "v1 ServiceAccount":
				a := &corev1.ServiceAccount{}
				decodeStrict(t, name, []byte(doc), a)
				o.accounts = append(o.accounts, a)
			default:
				t.Fatalf("%s: unexpected object %s %s (a Secret must never be rendered: secrets come from existing ones)", name, head.APIVersion, head.Kind)
			}
		}
	}
	return o
}

func envMap(c corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

// checkPods checks what both Deployments must have whatever the values.
func checkPods(t *testing.T, o objects, values string) {
	t.Helper()
	api, proj := o.deployments["connreg-api"], o.deployments["connreg-projector"]
	if api == nil || proj == nil {
		t.Fatalf("%s: deployments %v, want connreg-api and connreg-projector", values, o.kinds)
	}
	for _, d := range []*appsv1.Deployment{api, proj} {
		spec := d.Spec.Template.Spec
		if sel := d.Spec.Selector.MatchLabels; !labelsMatch(sel, d.Spec.Template.Labels) {
			t.Errorf("%s %s: selector %v does not select its pods %v", values, d.Name, sel, d.Spec.Template.Labels)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s %s: the pod may run as root", values, d.Name)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s %s: %d containers", values, d.Name, len(spec.Containers))
		}
		c := spec.Containers[0]
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s %s: container security context %+v, want a read-only root, no escalation, no capabilities", values, d.Name, sc)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s %s: resources %+v, want CPU and memory requests and a memory limit", values, d.Name, c.Resources)
		}
		env := envMap(c)
		for _, k := range []string{"ENV", "STREAM_REPLICAS", "MONGO_DATABASE", "VAULT_ADDR", "VAULT_TRANSIT_KEY", "DATA_DIR",
			"AUTH_MODE", "AUTH_ISSUER", "AUTH_AUDIENCE", "MONITOR_INTERVAL"} {
			if _, ok := env[k]; !ok {
				t.Errorf("%s %s: no %s", values, d.Name, k)
			}
		}
		// ENV=production refuses to serve without authentication.
		if env["ENV"].Value == "production" && env["AUTH_MODE"].Value != "oidc" {
			t.Errorf("%s %s: production with AUTH_MODE=%q", values, d.Name, env["AUTH_MODE"].Value)
		}
		for k, e := range env {
			if strings.Contains(k, "TOKEN") || strings.Contains(k, "SECRET") || strings.Contains(e.Value, "@") {
				t.Errorf("%s %s: %s carries a secret in a value; secrets come from existing Secrets", values, d.Name, k)
			}
		}
		if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name == "" {
			t.Errorf("%s %s: envFrom %+v, want the existing Secret", values, d.Name, c.EnvFrom)
		}
		// Every file variable points into a mounted Secret.
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
		vols := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			vols[v.Name] = v
		}
		if mounts["/tmp"] == "" {
			t.Errorf("%s %s: no writable /tmp beside the read-only root", values, d.Name)
		}
		for _, k := range []string{"NATS_CREDS", "NATS_NKEY", "NATS_CA", "NATS_CERT", "NATS_KEY", "VAULT_CACERT"} {
			e, ok := env[k]
			if !ok {
				continue
			}
			vol := mounts[filepath.Dir(e.Value)]
			if v, ok := vols[vol]; !ok || v.Secret == nil || v.Secret.SecretName == "" {
				t.Errorf("%s %s: %s=%s is not in a mounted Secret", values, d.Name, k, e.Value)
			}
		}
	}
	apiC := api.Spec.Template.Spec.Containers[0]
	if apiC.LivenessProbe == nil || apiC.LivenessProbe.HTTPGet == nil || apiC.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: API liveness probe %+v, want GET /healthz", values, apiC.LivenessProbe)
	}
	if apiC.ReadinessProbe == nil || apiC.ReadinessProbe.HTTPGet == nil || apiC.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: API readiness probe %+v, want GET /readyz", values, apiC.ReadinessProbe)
	}
	if e := envMap(apiC)["PROJECTOR"]; e.Value != "off" {
		t.Errorf("%s: the API runs PROJECTOR=%q, want off (the projector has its own Deployment)", values, e.Value)
	}
	if c := proj.Spec.Template.Spec.Containers[0]; !slices.Equal(c.Command, []string{"/projector"}) {
		t.Errorf("%s: projector command %v", values, c.Command)
	}
	if len(o.services) != 1 || !labelsMatch(o.services[0].Spec.Selector, api.Spec.Template.Labels) ||
		labelsMatch(o.services[0].Spec.Selector, proj.Spec.Template.Labels) {
		t.Errorf("%s: the Service must select the API pods and only them", values)
	}
	if len(o.pdbs) != 2 {
		t.Errorf("%s: %d PodDisruptionBudgets, want one for the API and one for the projector", values, len(o.pdbs))
	}
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestChartDefaultValues(t *testing.T) {
	o := decodeAll(t, render(t, "values.yaml"))
	checkPods(t, o, "values.yaml")
	if len(o.ingresses) != 0 || len(o.hpas) != 0 {
		t.Errorf("default values render %d Ingress and %d HPA, want none (both are opt-in)", len(o.ingresses), len(o.hpas))
	}
	api := o.deployments["connreg-api"]
	if api.Spec.Replicas == nil || *api.Spec.Replicas != 2 {
		t.Errorf("API replicas %v, want 2", api.Spec.Replicas)
	}
	proj := o.deployments["connreg-projector"]
	if proj.Spec.Replicas == nil || *proj.Spec.Replicas != 2 {
		t.Errorf("projector replicas %v, want 2 (one active, one standing by on the lease)", proj.Spec.Replicas)
	}
	if v := envMap(api.Spec.Template.Spec.Containers[0])["NATS_URL"].Value; v != "nats://nats.nats.svc:4222" {
		t.Errorf("NATS_URL %q, want the NATS chart's client Service", v)
	}
}

func TestChartProductionValues(t *testing.T) {
	o := decodeAll(t, render(t, "values.yaml", "values-production.yaml"))
	checkPods(t, o, "values-production.yaml")
	if len(o.ingresses) != 1 || len(o.ingresses[0].Spec.TLS) != 1 {
		t.Errorf("production renders %d Ingress, want one with TLS", len(o.ingresses))
	}
	if len(o.hpas) != 1 || o.hpas[0].Spec.ScaleTargetRef.Name != "connreg-api" || o.hpas[0].Spec.MinReplicas == nil || *o.hpas[0].Spec.MinReplicas < 2 {
		t.Errorf("production HPA %+v, want one on connreg-api with at least 2 replicas", o.hpas)
	}
	if r := o.deployments["connreg-api"].Spec.Replicas; r != nil {
		t.Errorf("with the HPA the Deployment must not set replicas (it would fight the autoscaler): %d", *r)
	}
	env := envMap(o.deployments["connreg-projector"].Spec.Template.Spec.Containers[0])
	for k, want := range map[string]string{
		"NATS_URL":        "tls://nats.nats.svc:4222",
		"NATS_CREDS":      "/etc/connreg/nats-creds/connreg.creds",
		"NATS_CA":         "/etc/connreg/nats-ca/ca.crt",
		"VAULT_ADDR":      "https://vault-active.vault.svc:8200",
		"VAULT_CACERT":    "/etc/connreg/vault-ca/ca.crt",
		"STREAM_REPLICAS": "3",
	} {
		if env[k].Value != want {
			t.Errorf("production %s=%q, want %q", k, env[k].Value, want)
		}
	}
	if _, ok := env["MONGO_URI"]; ok {
		t.Error("production sets MONGO_URI in a value; it carries a password and comes from the Secret")
	}
}
