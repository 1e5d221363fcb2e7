package dbprobe

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connreg/registry/internal/dbprobe/dbtest"
)

// The live servers are started once for the package, on first use, and stopped by TestMain.
var live struct {
	once     sync.Once
	ca       *dbtest.CA // signs every server certificate
	otherCA  *dbtest.CA // a CA none of the servers uses
	pg, my   *dbtest.Server
	fe       *dbtest.Ferret
	pgErr    error
	myErr    error
	feErr    error
	startLog string
}

func TestMain(m *testing.M) {
	code := m.Run()
	live.pg.Close()
	live.my.Close()
	live.fe.Close()
	os.Exit(code)
}

func startLive(t testing.TB) {
	t.Helper()
	live.once.Do(func() {
		var err error
		if live.ca, err = dbtest.NewCA("conntest test CA"); err != nil {
			live.pgErr, live.myErr, live.feErr = err, err, err
			return
		}
		if live.otherCA, err = dbtest.NewCA("unrelated CA"); err != nil {
			live.pgErr, live.myErr, live.feErr = err, err, err
			return
		}
		start := time.Now()
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); live.pg, live.pgErr = dbtest.StartPostgres(live.ca) }()
		go func() { defer wg.Done(); live.my, live.myErr = dbtest.StartMariaDB(live.ca) }()
		go func() { defer wg.Done(); live.fe, live.feErr = dbtest.StartFerretDB(live.ca) }()
		wg.Wait()
		live.startLog = "servers started in " + time.Since(start).Round(time.Millisecond).String()
	})
}

func postgresServer(t *testing.T) *dbtest.Server {
	t.Helper()
	startLive(t)
	if live.pgErr != nil {
		t.Fatalf("PostgreSQL test server: %v", live.pgErr)
	}
	return live.pg
}

func mariaDBServer(t *testing.T) *dbtest.Server {
	t.Helper()
	startLive(t)
	if live.myErr != nil {
		t.Fatalf("MariaDB test server: %v", live.myErr)
	}
	return live.my
}

func ferretServer(t *testing.T) *dbtest.Ferret {
	t.Helper()
	startLive(t)
	if live.feErr != nil {
		t.Fatalf("FerretDB test server: %v", live.feErr)
	}
	return live.fe
}

// fakeResolver answers from a map: a test input standing in for DNS, so names can point at loopback.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]string
	calls map[string]int
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _ string, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[host]++
	ips, ok := r.hosts[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range ips {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

// testResolver knows the names the test certificates are issued for.
func testResolver() *fakeResolver {
	return &fakeResolver{hosts: map[string][]string{
		"db.test":    {"127.0.0.1"},
		"other.test": {"127.0.0.1"},
	}}
}

// devTester is a Tester allowed to reach loopback, as in development mode.
func devTester(t *testing.T, timeout time.Duration) *Tester {
	t.Helper()
	p, err := NewPolicy(Development, "", "")
	if err != nil {
		t.Fatal(err)
	}
	tt, err := New(Config{Timeout: timeout, Policy: p, Resolver: testResolver()})
	if err != nil {
		t.Fatal(err)
	}
	return tt
}

// assertNoSecret fails if any form of the secrets shows up in s.
func assertNoSecret(t *testing.T, s string, secrets ...[]byte) {
	t.Helper()
	for _, sec := range secrets {
		if len(sec) == 0 {
			continue
		}
		if scrubbed := scrub(s, Target{Password: sec}); scrubbed != s || strings.Contains(s, string(sec)) {
			t.Fatalf("secret leaked into %q", s)
		}
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	p, err := dbtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// silentServer accepts connections and never answers, to provoke a timeout.
func silentServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

func TestLiveServersStart(t *testing.T) {
	postgresServer(t)
	mariaDBServer(t)
	ferretServer(t)
	t.Log(live.startLog)
}
