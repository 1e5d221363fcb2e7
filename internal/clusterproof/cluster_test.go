package clusterproof

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/eventstore"
)

// logBuffer keeps a process's output for the checks that read it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is one OS process of the cluster.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *logBuffer
	done chan struct{}
}

func start(t *testing.T, name, bin string, args, env []string) *proc {
	t.Helper()
	p := &proc{name: name, log: &logBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		out := p.log.String()
		if dir := os.Getenv("CLUSTERPROOF_LOGS"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, name+".log"), []byte(out), 0o644)
		}
		if t.Failed() {
			if len(out) > 4000 {
				out = out[len(out)-4000:]
			}
			t.Logf("--- %s (last output) ---\n%s", name, out)
		}
	})
	return p
}

// kill is kill -9.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// build compiles the three programs (Go's build cache makes a rebuild a link).
func build(t *testing.T) (natsServer, api, projector, ferretdb string) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir := t.TempDir()
	for _, b := range []struct{ out, pkg string }{
		{"nats-server", "github.com/nats-io/nats-server/v2"},
		{"api", "./cmd/api"},
		{"projector", "./cmd/projector"},
		{"ferretdb", "./internal/clusterproof/ferretdb"},
	} {
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
		t.Logf("built %s in %s", b.out, time.Since(start).Round(time.Millisecond))
	}
	return filepath.Join(dir, "nats-server"), filepath.Join(dir, "api"), filepath.Join(dir, "projector"), filepath.Join(dir, "ferretdb")
}

// natsNode is one nats-server process of the cluster; restart brings it back
// on the same ports and store.
type natsNode struct {
	name                   string
	client, route, monitor int
	dir                    string
	args                   []string
	bin                    string
	p                      *proc
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.client) }

func (n *natsNode) start(t *testing.T) {
	t.Helper()
	n.p = start(t, n.name, n.bin, n.args, nil)
}

func startCluster(t *testing.T, bin string) []*natsNode {
	t.Helper()
	nodes := make([]*natsNode, 3)
	for i := range nodes {
		nodes[i] = &natsNode{name: fmt.Sprintf("n%d", i), client: freePort(t), route: freePort(t), monitor: freePort(t),
			dir: t.TempDir(), bin: bin}
	}
	for _, n := range nodes {
		var routes []string
		for _, o := range nodes {
			if o != n {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.route))
			}
		}
		n.args = []string{"-n", n.name, "-a", "127.0.0.1", "-p", fmt.Sprint(n.client), "-m", fmt.Sprint(n.monitor),
			"--cluster_name", "connreg", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.route),
			"--routes", strings.Join(routes, ","), "-js", "-sd", n.dir}
		n.start(t)
	}
	for _, n := range nodes {
		waitHealthy(t, n)
	}
	deadline := time.Now().Add(60 * time.Second)
	for metaLeader(t, nodes) == "" {
		if time.Now().After(deadline) {
			t.Fatal("no JetStream meta leader elected")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nodes
}

// waitHealthy waits until the node's /healthz says JetStream is current.
func waitHealthy(t *testing.T, n *natsNode) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitor))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy: %v", n.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type jsz struct {
	Meta *struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
	Accounts []struct {
		Streams []struct {
			Name    string `json:"name"`
			Cluster *struct {
				Leader string `json:"leader"`
			} `json:"cluster"`
			Config *struct {
				Replicas int `json:"num_replicas"`
			} `json:"config"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

// monitor reads /jsz from the first live node that answers.
func monitor(t *testing.T, nodes []*natsNode) jsz {
	t.Helper()
	for _, n := range nodes {
		select {
		case <-n.p.done:
			continue
		default:
		}
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?streams=true&config=true", n.monitor))
		if err != nil {
			continue
		}
		var j jsz
		err = json.NewDecoder(res.Body).Decode(&j)
		res.Body.Close()
		if err == nil {
			return j
		}
	}
	return jsz{}
}

func metaLeader(t *testing.T, nodes []*natsNode) string {
	if j := monitor(t, nodes); j.Meta != nil {
		return j.Meta.Leader
	}
	return ""
}

// streamLeader is the leader of the registry's stream and its replica count.
func streamLeader(t *testing.T, nodes []*natsNode) (string, int) {
	for _, a := range monitor(t, nodes).Accounts {
		for _, s := range a.Streams {
			if s.Name == events.StreamName && s.Cluster != nil && s.Config != nil {
				return s.Cluster.Leader, s.Config.Replicas
			}
		}
	}
	return "", 0
}

func node(nodes []*natsNode, name string) *natsNode {
	for _, n := range nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// outcome is one create request.
type outcome struct {
	name       string
	api        int
	status     int
	id         string
	start, end time.Time
}

// load sends creates through both APIs: pairs of requests for the same
// name, one through each API at the same moment.
type load struct {
	apis    []string
	client  *http.Client
	mu      sync.Mutex
	results []outcome
	created atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

func (l *load) post(api int, name string) outcome {
	body, _ := json.Marshal(map[string]any{
		"configName": name, "type": "POSTGRESQL", "host": "db.example.com", "port": 5432,
		"databaseName": "reports", "userName": "reader", "password": "cluster-secret-" + name,
	})
	o := outcome{name: name, api: api, start: time.Now()}
	req, _ := http.NewRequest(http.MethodPost, l.apis[api]+"/v1/management/connections", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Product-Name", "cluster")
	res, err := l.client.Do(req)
	o.end = time.Now()
	if err != nil {
		o.status = -1
		return o
	}
	defer res.Body.Close()
	o.status = res.StatusCode
	var doc struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(res.Body).Decode(&doc)
	o.id = doc.ID
	if o.status == http.StatusCreated {
		l.created.Add(1)
	}
	return o
}

func (l *load) run(pairs, maxRounds int) {
	for p := range pairs {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := range maxRounds {
				select {
				case <-l.stop:
					return
				default:
				}
				name := fmt.Sprintf("cl-%d-%d", p, i)
				var pair [2]outcome
				var wg sync.WaitGroup
				for a := range 2 {
					wg.Add(1)
					go func() { defer wg.Done(); pair[a] = l.post(a, name) }()
				}
				wg.Wait()
				l.mu.Lock()
				l.results = append(l.results, pair[0], pair[1])
				l.mu.Unlock()
				if pair[0].status != http.StatusCreated && pair[1].status != http.StatusCreated {
					time.Sleep(50 * time.Millisecond) // as a client retrying after a 503 would
				} else {
					time.Sleep(10 * time.Millisecond) // a steady load, not a benchmark
				}
			}
		}()
	}
}

// waitCreated waits until n more creates than now were answered 201.
func (l *load) waitCreated(t *testing.T, n int64, what string) {
	t.Helper()
	target := l.created.Load() + n
	deadline := time.Now().Add(90 * time.Second)
	for l.created.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("%s: only %d of %d creates answered 201 in 90s", what, l.created.Load(), target)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resumedAfter is how long after at the first create sent after at was
// answered 201.
func (l *load) resumedAfter(at time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := time.Time{}
	for _, o := range l.results {
		if o.status == http.StatusCreated && o.start.After(at) && (first.IsZero() || o.end.Before(first)) {
			first = o.end
		}
	}
	return first.Sub(at)
}

func (l *load) statusesBetween(from, to time.Time) map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[int]int{}
	for _, o := range l.results {
		if !o.start.Before(from) && o.start.Before(to) {
			m[o.status]++
		}
	}
	return m
}

func waitHTTP(t *testing.T, url string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited", p.name)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer on %s", p.name, url)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterPath runs the registry as deploy/ runs it, with real processes
// on loopback: three clustered nats-servers (stream R3), a Mongo-wire read
// model process (FerretDB/SQLite from its module, through the devstack: see
// ./ferretdb; FerretDB's own command needs modules the service does not
// depend on), two API processes with PROJECTOR=off and two projector
// processes sharing the lease. Under concurrent creates through both APIs it
// kills -9 the JetStream meta leader, then the stream leader, then the
// active projector, and checks: every name race has exactly one winner
// across processes, every create answered 201 is readable and stored once,
// writes resume, the standby projector takes over, and `projector verify`
// finds the read model equal to the stream.
func TestClusterPath(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs seven processes")
	}
	natsBin, apiBin, projectorBin, ferretBin := build(t)
	nodes := startCluster(t, natsBin)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url())
	}
	mongoAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mongoProc := start(t, "ferretdb", ferretBin, []string{"-dir", t.TempDir(), "-addr", mongoAddr}, nil)
	mongoURI := "mongodb://" + mongoAddr + "/"
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("tcp", mongoAddr); err == nil {
			c.Close()
			break
		}
		select {
		case <-mongoProc.done:
			t.Fatal("ferretdb exited")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("ferretdb does not listen")
		}
		time.Sleep(50 * time.Millisecond)
	}

	common := []string{"NATS_URL=" + strings.Join(urls, ","), "MONGO_URI=" + mongoURI, "STREAM_REPLICAS=3",
		"STORE_TIMEOUT=3s", "PROJECTOR_LEASE_TTL=3s", "LOG_LEVEL=info"}
	// The development sealer keeps its key under DATA_DIR: both APIs share one.
	data := t.TempDir()
	var apis []string
	for i := range 2 {
		port := freePort(t)
		p := start(t, fmt.Sprintf("api%d", i), apiBin, nil,
			append(slices.Clone(common), "PROJECTOR=off", "DATA_DIR="+data, fmt.Sprintf("HTTP_ADDR=127.0.0.1:%d", port)))
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		waitHTTP(t, url+"/healthz", p)
		apis = append(apis, url)
	}
	if leader, replicas := streamLeader(t, nodes); replicas != 3 || leader == "" {
		t.Fatalf("stream %s: %d replicas, leader %q; want 3 replicas and a leader", events.StreamName, replicas, leader)
	}
	projectors := []*proc{
		// Each projector serves its probes and metrics on a port of its own.
		start(t, "projector0", projectorBin, nil, append(slices.Clone(common), "DATA_DIR="+t.TempDir(),
			fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", freePort(t)))),
		start(t, "projector1", projectorBin, nil, append(slices.Clone(common), "DATA_DIR="+t.TempDir(),
			fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", freePort(t)))),
	}
	// The lease's value names its holder; each projector logs its owner name.
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	holder := func() int {
		kv, err := js.KeyValue(t.Context(), eventstore.LeaseBucket)
		if err != nil {
			return -1
		}
		e, err := kv.Get(t.Context(), eventstore.ProjectorLeaseKey)
		if err != nil {
			return -1
		}
		for i, p := range projectors {
			if strings.Contains(p.log.String(), `"owner":"`+string(e.Value())+`"`) {
				return i
			}
		}
		return -1
	}
	deadline = time.Now().Add(60 * time.Second)
	for holder() < 0 {
		if time.Now().After(deadline) {
			t.Fatal("no projector took the lease")
		}
		time.Sleep(20 * time.Millisecond)
	}

	l := &load{apis: apis, client: &http.Client{Timeout: 20 * time.Second}, stop: make(chan struct{})}
	l.run(3, 100000)
	stopped := false
	stopLoad := func() {
		if !stopped {
			close(l.stop)
			l.wg.Wait()
			stopped = true
		}
	}
	t.Cleanup(stopLoad)
	l.waitCreated(t, 100, "warm-up")

	// kill -9 the JetStream meta leader, mid-load; bring it back once
	// writes go on without it.
	killed := func(what, name string) {
		n := node(nodes, name)
		if n == nil {
			t.Fatalf("%s %q is not a node of the cluster", what, name)
		}
		at := time.Now()
		n.p.kill()
		l.waitCreated(t, 100, "after killing the "+what)
		resume := l.resumedAfter(at)
		st := l.statusesBetween(at, at.Add(resume))
		t.Logf("killed the %s (%s): writes resumed after %s; requests sent meanwhile: %v", what, name, resume.Round(time.Millisecond), st)
		if resume > 20*time.Second {
			t.Errorf("writes resumed %s after the %s died, want within seconds", resume, what)
		}
		n.start(t)
		waitHealthy(t, n)
		l.waitCreated(t, 50, "after restarting the "+what)
	}
	killed("JetStream meta leader", metaLeader(t, nodes))
	leader, _ := streamLeader(t, nodes)
	killed("stream leader", leader)

	// kill -9 the active projector, still under load: the standby takes over.
	first := holder()
	if first < 0 {
		t.Fatal("no projector holds the lease")
	}
	at := time.Now()
	projectors[first].kill()
	deadline = time.Now().Add(30 * time.Second)
	for holder() != 1-first {
		if time.Now().After(deadline) {
			t.Fatal("the standby projector did not take over within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	takeover := time.Since(at)
	acquired := 0
	for _, p := range projectors {
		acquired += strings.Count(p.log.String(), "lease acquired")
	}
	t.Logf("killed the active projector: the standby took over after %s (lease TTL 3s); leases acquired over the run: %d",
		takeover.Round(time.Millisecond), acquired)
	l.waitCreated(t, 50, "after killing the active projector")
	stopLoad()

	// The results.
	counts := map[int]int{}
	winners := map[string][]outcome{}
	for _, o := range l.results {
		counts[o.status]++
		if o.status == http.StatusCreated {
			winners[o.name] = append(winners[o.name], o)
		}
	}
	for name, w := range winners {
		if len(w) > 1 {
			t.Errorf("name %s: %d creates answered 201 (%s, %s), want one winner", name, len(w), w[0].id, w[1].id)
		}
	}
	stored := storedCreates(t, urls)
	lost := 0
	for name, w := range winners {
		ids := stored[name]
		if len(ids) != 1 || ids[0] != w[0].id {
			lost++
			t.Errorf("name %s: answered 201 with %s, the stream holds %v", name, w[0].id, ids)
		}
	}
	storedDespite503 := 0
	for name, ids := range stored {
		if len(ids) > 1 {
			t.Errorf("name %s: %d connections created in the stream (%v), want one winner across processes", name, len(ids), ids)
		}
		if _, ok := winners[name]; !ok {
			storedDespite503++
		}
	}
	// Every 201 is readable, through the API that did not create it.
	type read struct {
		name string
		o    outcome
	}
	reads := make(chan read)
	var unreadable atomic.Int64
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for r := range reads {
				api := apis[1-r.o.api]
				res, err := l.client.Get(api + "/v1/management/connections/" + r.o.id)
				if err != nil {
					unreadable.Add(1)
					t.Errorf("GET %s through %s: %v", r.o.id, api, err)
					continue
				}
				var doc struct {
					ConfigName string `json:"configName"`
				}
				_ = json.NewDecoder(res.Body).Decode(&doc)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || doc.ConfigName != r.name {
					unreadable.Add(1)
					t.Errorf("GET %s through %s: %d %q, want 200 %q", r.o.id, api, res.StatusCode, doc.ConfigName, r.name)
				}
			}
		}()
	}
	for name, w := range winners {
		reads <- read{name, w[0]}
	}
	close(reads)
	readers.Wait()
	lost += int(unreadable.Load())
	t.Logf("creates: %d requests, %d answered 201, %d 409, %d 503, %d other (%v); lost: %d; names stored although no request got 201: %d",
		len(l.results), counts[201], counts[409], counts[503], len(l.results)-counts[201]-counts[409]-counts[503], counts, lost, storedDespite503)
	if lost != 0 {
		t.Errorf("%d creates answered 201 were lost", lost)
	}
	if other := len(l.results) - counts[201] - counts[409] - counts[503]; other != 0 {
		t.Errorf("%d creates were answered neither 201, 409 nor 503: %v", other, counts)
	}

	// The read model equals the stream once the new active projector has
	// caught up: `projector verify` exits 0.
	deadline = time.Now().Add(120 * time.Second)
	for {
		cmd := exec.Command(projectorBin, "verify")
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, common...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Logf("projector verify: %s", strings.TrimSpace(lastLine(string(out))))
			break
		}
		var exit *exec.ExitError
		if !errors.As(err, &exit) || time.Now().After(deadline) {
			t.Fatalf("projector verify: %v\n%s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// storedCreates reads the stream: config name -> ids of the connections
// created with it.
func storedCreates(t *testing.T, urls []string) map[string][]string {
	t.Helper()
	// Right after the kills the cluster may still be electing leaders
	// (the JetStream API answers "no responders"): read again until a full
	// read succeeds, within a deadline.
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := readCreates(urls)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("read the stream's creates: %v", err)
		}
		t.Logf("reading the stream's creates: %v; trying again", err)
		time.Sleep(time.Second)
	}
}

// readCreates reads every created event of the stream: config name -> ids.
func readCreates(urls []string) (map[string][]string, error) {
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.EventSubjectFilter}})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			e, err := events.Decode(m.Data())
			if err != nil {
				return nil, fmt.Errorf("undecodable event on %s: %w", m.Subject(), err)
			}
			if c, ok := e.Payload.(*events.ConnectionCreatedV1); ok {
				out[c.ConfigName] = append(out[c.ConfigName], e.AggregateID)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if got == 0 {
			return out, nil // the load has stopped: nothing more will come
		}
	}
}
