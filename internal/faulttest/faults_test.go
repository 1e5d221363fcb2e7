package faulttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the suite. Every wait is a poll with one of these deadlines.
const (
	startDeadline    = 90 * time.Second // a process answers
	convergeDeadline = 90 * time.Second // the read model holds every acknowledged create
	workers          = 4                // concurrent clients of the load
)

// paced is the pause between two creates of one client when the lists are
// answered by FerretDB itself (PROJECTOR=off): it scans and sorts the whole
// collection for every page, about a second per page at a few thousand
// connections here, so the load stays at a few hundred creates.
const paced = 20 * time.Millisecond

// binaries are the programs the suite runs, built once per test binary.
type binaries struct{ api, projector, nats, store string }

var (
	buildOnce sync.Once
	built     binaries
	buildErr  error
)

// TestMain removes the built programs after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if built.api != "" {
		_ = os.RemoveAll(filepath.Dir(built.api))
	}
	os.Exit(code)
}

func build(t *testing.T) binaries {
	t.Helper()
	if testing.Short() {
		t.Skip("the fault suite builds and runs real processes; skipped with -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "connreg-faults-bin-")
		if err != nil {
			buildErr = err
			return
		}
		built = binaries{api: filepath.Join(dir, "api"), projector: filepath.Join(dir, "projector"),
			nats: filepath.Join(dir, "nats-server"), store: filepath.Join(dir, "storeproc")}
		for _, b := range []struct{ out, pkg string }{
			{built.api, "github.com/connreg/registry/cmd/api"},
			{built.projector, "github.com/connreg/registry/cmd/projector"},
			{built.nats, "github.com/nats-io/nats-server/v2"},
			{built.store, "github.com/connreg/registry/internal/faulttest/storeproc"},
		} {
			out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is one running program; its output goes to a file printed when the
// test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
	return p
}

func (p *proc) signal(s syscall.Signal) { _ = p.cmd.Process.Signal(s) }

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill() {
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGKILL)
	<-p.done
}

// stop ends the process with SIGTERM (a graceful stop) and waits for it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop in 30 s after SIGTERM", p.name)
		p.kill()
	}
}

// stack is one deployment under test: the API and, when external, its NATS
// and its store, each a process.
type stack struct {
	t       *testing.T
	bin     binaries
	dataDir string
	apiAddr string
	api     *proc

	natsAddr, natsDir   string // "" when embedded
	nats                *proc
	storeAddr, storeDir string // "" when embedded
	store               *proc
	projector           *proc // nil when the API runs the projector
}

// topology says which parts run as processes of their own.
type topology struct{ externalNATS, externalStore, projectorProcess bool }

func newStack(t *testing.T, top topology) *stack {
	s := &stack{t: t, bin: build(t), dataDir: t.TempDir(), apiAddr: freeAddr(t)}
	if top.externalNATS {
		s.natsAddr, s.natsDir = freeAddr(t), t.TempDir()
		s.startNATS()
	}
	if top.externalStore {
		s.storeAddr, s.storeDir = freeAddr(t), t.TempDir()
		s.startStore()
	}
	if top.projectorProcess {
		s.startProjector()
	}
	s.startAPI()
	return s
}

func (s *stack) startProjector() {
	s.projector = start(s.t, "projector", s.env(), s.bin.projector)
}

func (s *stack) env() []string {
	// METRICS_ADDR=off: the projector's probe port (127.0.0.1:9090 by
	// default) would collide with other tests running at the same time.
	env := []string{"DATA_DIR=" + s.dataDir, "HTTP_ADDR=" + s.apiAddr, "STORE_TIMEOUT=2s", "LOG_LEVEL=warn", "ENV=development", "METRICS_ADDR=off"}
	if s.natsAddr != "" {
		env = append(env, "NATS_URL=nats://"+s.natsAddr)
	}
	if s.storeAddr != "" {
		env = append(env, "MONGO_URI=mongodb://"+s.storeAddr+"/")
	}
	if s.projector != nil {
		env = append(env, "PROJECTOR=off")
	}
	return env
}

func (s *stack) startNATS() {
	host, port, _ := net.SplitHostPort(s.natsAddr)
	s.nats = start(s.t, "nats-server", nil, s.bin.nats, "-js", "-sd", s.natsDir, "-a", host, "-p", port)
	waitTCP(s.t, s.natsAddr)
}

func (s *stack) startStore() {
	s.store = start(s.t, "store", nil, s.bin.store, s.storeDir, s.storeAddr)
	waitTCP(s.t, s.storeAddr)
}

func (s *stack) startAPI() {
	s.api = start(s.t, "api", s.env(), s.bin.api)
	deadline := time.Now().Add(startDeadline)
	for {
		req, _ := http.NewRequest(http.MethodGet, s.url("?limit=1"), nil)
		req.Header.Set("X-Product-Name", "Faults") // a list names its product
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the API did not answer in %s", startDeadline)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(startDeadline)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer in %s", addr, startDeadline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *stack) url(rest string) string {
	return "http://" + s.apiAddr + "/v1/management/connections" + rest
}

// outcome is what one create got.
type outcome struct {
	name   string
	status int    // 0: no answer (the connection failed)
	code   string // the error code of a refusal
	id     string // the id of a 201
}

var client = &http.Client{Timeout: 15 * time.Second}

// create sends one create with an Idempotency-Key equal to its name, so that
// the same request sent again tells whether the first was stored.
func (s *stack) create(name string) (outcome, bool) {
	body, _ := json.Marshal(map[string]any{
		"configName": name, "type": "POSTGRESQL", "host": "db.example.com", "port": 5432,
		"databaseName": "db", "userName": "u", "password": "pw-" + name,
	})
	req, _ := http.NewRequest(http.MethodPost, s.url(""), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Product-Name", "Faults")
	req.Header.Set("Idempotency-Key", name)
	o := outcome{name: name}
	res, err := client.Do(req)
	if err != nil {
		return o, false
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	o.status = res.StatusCode
	var m struct{ ID, Code string }
	_ = json.Unmarshal(b, &m)
	o.id, o.code = m.ID, m.Code
	return o, res.Header.Get("Idempotent-Replayed") == "true"
}

// load runs creates from several clients until stop closes and returns every
// outcome.
// load creates connections from several workers until stop; pace slows them
// when a projector process runs (decided by the caller before the fault,
// which restarts the projector and so changes s.projector).
func (s *stack) load(prefix string, stop <-chan struct{}, pace bool) []outcome {
	var mu sync.Mutex
	var all []outcome
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				o, _ := s.create(fmt.Sprintf("%s-%d-%d", prefix, w, i))
				if pace {
					time.Sleep(paced)
				}
				if o.status == 0 {
					time.Sleep(20 * time.Millisecond) // the API is down: do not spin
				}
				mu.Lock()
				all = append(all, o)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return all
}

// listed pages through the list of the connections whose name starts with
// prefix and returns their ids by name.
func (s *stack) listed(prefix string) (map[string][]string, error) {
	byName := map[string][]string{}
	cursor := ""
	for {
		q := url.Values{"configName": {prefix}, "limit": {"100"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		req, _ := http.NewRequest(http.MethodGet, s.url("?"+q.Encode()), nil)
		req.Header.Set("X-Product-Name", "Faults")
		res, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Items      []struct{ ID, ConfigName string }
			NextCursor string
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("list: %d %v", res.StatusCode, err)
		}
		for _, it := range page.Items {
			byName[it.ConfigName] = append(byName[it.ConfigName], it.ID)
		}
		if page.NextCursor == "" || len(page.Items) == 0 {
			return byName, nil
		}
		cursor = page.NextCursor
	}
}

func (s *stack) get(id string) int {
	res, err := client.Get(s.url("/" + id))
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// report is what one fault run logs.
type report struct {
	attempted, created, unavailable, unknown, noAnswer, other int
	lost, lying                                               int
	converge                                                  time.Duration // from the end of the load to complete lists
}

// check waits for the read model to hold every acknowledged create and
// checks the truth of every refusal, then stops the API and runs `projector
// verify` against the same stack.
func (s *stack) check(prefix string, outcomes []outcome, loadEnded time.Time) report {
	t := s.t
	var r report
	acked := map[string]string{} // name -> id
	var doubtful []outcome       // 503s and unanswered requests: were they stored?
	for _, o := range outcomes {
		r.attempted++
		switch {
		case o.status == http.StatusCreated:
			r.created++
			acked[o.name] = o.id
		case o.status == http.StatusServiceUnavailable && o.code == "REG-5035":
			r.unknown++
			doubtful = append(doubtful, o)
		case o.status == http.StatusServiceUnavailable:
			r.unavailable++
			doubtful = append(doubtful, o)
		case o.status == 0:
			r.noAnswer++
			doubtful = append(doubtful, o)
		default:
			r.other++
			t.Errorf("create %s answered %d %s", o.name, o.status, o.code)
		}
	}
	// Every acknowledged create is listed, once, and readable.
	deadline := time.Now().Add(convergeDeadline)
	var missing []string
	for {
		byName, err := s.listed(prefix)
		missing = missing[:0]
		if err == nil {
			for name, id := range acked {
				if ids := byName[name]; len(ids) != 1 || ids[0] != id {
					missing = append(missing, name)
				}
			}
		}
		if err == nil && len(missing) == 0 {
			r.converge = time.Since(loadEnded)
			for name, ids := range byName {
				if len(ids) > 1 {
					t.Errorf("name %s owned by %v", name, ids)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			r.lost = len(missing)
			t.Errorf("%d acknowledged creates missing from the list after %s (err %v): %v", len(missing), convergeDeadline, err, head(missing))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, id := range acked {
		if st := s.get(id); st != http.StatusOK {
			t.Errorf("GET of acknowledged %s (%s) answered %d", name, id, st)
		}
	}
	// A 503 that said "nothing was written" must be true: the same request
	// again creates the connection instead of replaying a stored one.
	for _, o := range doubtful {
		again, replayed := s.create(o.name)
		if again.status != http.StatusCreated {
			t.Errorf("retry of %s answered %d %s", o.name, again.status, again.code)
			continue
		}
		if replayed && o.status == http.StatusServiceUnavailable && o.code != "REG-5035" {
			r.lying++
			t.Errorf("create %s answered 503 %s (nothing written) but was stored", o.name, o.code)
		}
	}
	// The read model equals the fold of the stream.
	s.api.stop(t)
	if s.projector != nil {
		s.projector.stop(t)
	}
	cmd := exec.Command(s.bin.projector, "verify")
	cmd.Env = append(os.Environ(), s.env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("projector verify: %v\n%s", err, out)
	}
	return r
}

func head(xs []string) []string { return xs[:min(len(xs), 10)] }

func (r report) log(t *testing.T, fault string) {
	t.Logf("%s: attempted %d, 201 %d, 503 %d (REG-5035 outcome unknown %d), no answer %d, other %d, lost %d, lying 503s %d, lists complete %s after the load ended",
		fault, r.attempted, r.created, r.unavailable+r.unknown, r.unknown, r.noAnswer, r.other, r.lost, r.lying, r.converge.Round(time.Millisecond))
}

// run drives load through fault: load for a while, inject, let it recover,
// load again, then check.
func (s *stack) run(fault string, inject func()) {
	prefix := "f-" + strings.ReplaceAll(fault, " ", "-")
	stop := make(chan struct{})
	res := make(chan []outcome, 1)
	pace := s.projector != nil
	go func() { res <- s.load(prefix, stop, pace) }()
	time.Sleep(1500 * time.Millisecond) // load before the fault
	inject()
	time.Sleep(1500 * time.Millisecond) // load after it
	close(stop)
	outcomes := <-res
	r := s.check(prefix, outcomes, time.Now())
	r.log(s.t, fault)
	if r.created == 0 {
		s.t.Errorf("%s: no create succeeded: the run proves nothing", fault)
	}
}

func TestKillAPIExternalNATS(t *testing.T) {
	s := newStack(t, topology{externalNATS: true})
	s.run("kill api external nats", func() {
		s.api.kill()
		s.startAPI()
	})
}

func TestKillAPIEmbedded(t *testing.T) {
	s := newStack(t, topology{})
	s.run("kill api embedded", func() {
		s.api.kill()
		s.startAPI()
	})
}

func TestNATSFrozen(t *testing.T) {
	s := newStack(t, topology{externalNATS: true})
	s.run("nats frozen", func() {
		s.nats.signal(syscall.SIGSTOP)
		time.Sleep(3 * time.Second)
		s.nats.signal(syscall.SIGCONT)
	})
}

func TestNATSRestarted(t *testing.T) {
	s := newStack(t, topology{externalNATS: true})
	s.run("nats restarted", func() {
		s.nats.kill()
		time.Sleep(time.Second)
		s.startNATS()
	})
}

func TestStoreRestarted(t *testing.T) {
	s := newStack(t, topology{externalNATS: true, externalStore: true})
	s.run("store restarted", func() {
		s.store.kill()
		time.Sleep(2 * time.Second)
		s.startStore()
	})
}

func TestKillProjectorProcess(t *testing.T) {
	s := newStack(t, topology{externalNATS: true, externalStore: true, projectorProcess: true})
	s.run("kill projector process", func() {
		s.projector.kill()
		s.startProjector()
	})
}
