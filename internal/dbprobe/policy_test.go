package dbprobe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPolicy(t *testing.T) {
	r := &fakeResolver{hosts: map[string][]string{
		"public.example":   {"203.0.113.10"},
		"rebind.example":   {"203.0.113.10", "127.0.0.1"}, // one bad answer refuses the host
		"meta.example":     {"169.254.169.254"},
		"meta6.example":    {"fd00:ec2::254"},
		"linklocal.test":   {"fe80::1"},
		"mapped.example":   {"::ffff:127.0.0.1"},
		"private.example":  {"10.1.2.3"},
		"internal.example": {"192.168.7.7"},
	}}
	cases := []struct {
		mode            Mode
		allowed, denied string
		host            string
		blocked         bool
	}{
		{Production, "", "", "public.example", false},
		{Production, "", "", "127.0.0.1", true},
		{Production, "", "", "::1", true},
		{Production, "", "", "localhost.rebind", true}, // unresolvable: not a policy error, see below
		{Production, "", "", "rebind.example", true},
		{Production, "", "", "meta.example", true},
		{Production, "", "", "meta6.example", true},
		{Production, "", "", "linklocal.test", true},
		{Production, "", "", "mapped.example", true},
		{Production, "", "", "0.0.0.0", true},
		{Production, "", "", "::", true},
		{Production, "", "", "private.example", false},
		{Production, "127.0.0.1/32", "", "127.0.0.1", false},               // an explicit allow beats a built-in deny
		{Production, "169.254.0.0/16", "", "meta.example", true},           // but never for cloud metadata
		{Production, "10.0.0.0/8", "", "private.example", false},           // inside the allow list
		{Production, "10.0.0.0/8", "", "internal.example", true},           // outside the allow list
		{Production, "10.0.0.0/8", "10.1.0.0/16", "private.example", true}, // deny beats allow
		{Development, "", "", "127.0.0.1", false},
		{Development, "", "", "meta.example", false},
		{Development, "", "10.0.0.0/8, 192.168.7.7", "internal.example", true},
		{Development, "", "::ffff:10.0.0.0/104", "private.example", true}, // IPv4-mapped notation
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d %s allow=%s deny=%s", c.mode, c.host, c.allowed, c.denied), func(t *testing.T) {
			p, err := NewPolicy(c.mode, c.allowed, c.denied)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Resolve(context.Background(), r, c.host)
			if c.host == "localhost.rebind" {
				var dns *net.DNSError
				if !errors.As(err, &dns) || errors.Is(err, ErrBlocked) {
					t.Fatalf("unresolvable host: got %v, want a DNS error", err)
				}
				return
			}
			var be *BlockedError
			if got := errors.As(err, &be); got != c.blocked || (err != nil && !c.blocked) {
				t.Fatalf("blocked=%v err=%v, want blocked=%v", got, err, c.blocked)
			}
			if c.blocked && !errors.Is(err, ErrBlocked) {
				t.Fatal("a BlockedError must match ErrBlocked")
			}
		})
	}
}

func TestPolicyRejectsInvalidNetworks(t *testing.T) {
	for _, s := range []string{"10.0.0.0/33", "not-an-ip", "10.0.0.1/8/2"} {
		if _, err := NewPolicy(Production, s, ""); err == nil {
			t.Errorf("allowed %q accepted", s)
		}
		if _, err := NewPolicy(Production, "", s); err == nil {
			t.Errorf("denied %q accepted", s)
		}
	}
	env := map[string]string{"TEST_ALLOWED_NETWORKS": "10.0.0.0/8", "TEST_DENIED_NETWORKS": "10.9.0.0/16"}
	p, err := PolicyFromEnv(Production, func(k string) string { return env[k] })
	if err != nil || len(p.allowed) != 1 || len(p.denied) != 1 {
		t.Fatalf("PolicyFromEnv: %+v %v", p, err)
	}
}

// In production mode a loopback target is refused before any connection is made.
func TestTesterRefusesBlockedHostWithoutDialling(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	p, _ := NewPolicy(Production, "", "")
	r := &fakeResolver{hosts: map[string][]string{"sneaky.example": {"127.0.0.1"}}}
	tt, err := New(Config{Policy: p, Resolver: r, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	for _, e := range []Engine{PostgreSQL, MySQL, MongoDB, SQLServer, Oracle} {
		for _, h := range []string{"127.0.0.1", "sneaky.example"} {
			_, err := tt.Test(context.Background(), Target{Engine: e, Host: h, Port: port, User: "u", Database: "d", Password: []byte("pw")})
			if !errors.Is(err, ErrBlocked) {
				t.Fatalf("%s %s: got %v, want ErrBlocked", e, h, err)
			}
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connections reached the blocked address", n)
	}
}

// The target host is resolved once; a second, different DNS answer (rebinding) is never used.
func TestTesterResolvesOnce(t *testing.T) {
	port := silentServer(t)
	p, _ := NewPolicy(Development, "", "127.0.0.2/32")
	r := &rebinder{}
	tt, _ := New(Config{Policy: p, Resolver: r, Timeout: 200 * time.Millisecond})
	res, err := tt.Test(context.Background(), Target{Engine: PostgreSQL, Host: "flip.example", Port: port, User: "u"})
	if err != nil || res.Reason != ReasonTimeout {
		t.Fatalf("got %+v %v; want a timeout against the first (allowed) answer", res, err)
	}
	if n := r.calls.Load(); n != 1 {
		t.Fatalf("resolved %d times, want 1", n)
	}
}

type rebinder struct{ calls atomic.Int32 }

func (r *rebinder) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	if r.calls.Add(1) == 1 {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
}

func TestTesterRejectsInvalidTargets(t *testing.T) {
	tt := devTester(t, time.Second)
	for _, tg := range []Target{
		{Engine: "DB2", Host: "h", User: "u"},
		{Engine: PostgreSQL, Host: "/var/run/postgresql", User: "u"},
		{Engine: PostgreSQL, Host: "a,b", User: "u"},
		{Engine: SQLServer, Host: `h\inst`, User: "u"},
		{Engine: PostgreSQL, Host: "h", Port: 70000, User: "u"},
		{Engine: PostgreSQL, Host: "h"},
		{Engine: Oracle, Host: "h", User: "u"},
		{Engine: PostgreSQL, Host: "h", User: "u", SSL: &SSL{Mode: "true"}},
		{Engine: MySQL, Host: "h", User: "u", SSL: &SSL{Mode: "verify-full"}},
	} {
		var ie *InvalidTargetError
		if _, err := tt.Test(context.Background(), tg); !errors.As(err, &ie) {
			t.Errorf("%+v: got %v, want InvalidTargetError", tg, err)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New without a Policy must fail")
	}
}

func TestTesterBusy(t *testing.T) {
	port := silentServer(t)
	p, _ := NewPolicy(Development, "", "")
	tt, _ := New(Config{Policy: p, MaxConcurrent: 1, Timeout: 300 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = tt.Test(context.Background(), Target{Engine: PostgreSQL, Host: "127.0.0.1", Port: port, User: "u"})
	}()
	for len(tt.sem) == 0 { // wait until the first test holds the only slot
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := tt.Test(ctx, Target{Engine: PostgreSQL, Host: "127.0.0.1", Port: port, User: "u"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrBusy", err)
	}
	<-done
}

func TestSecretNeverFormats(t *testing.T) {
	pw, key := "hunter2-pw", "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
	tg := Target{Engine: PostgreSQL, Host: "h", User: "u", Password: []byte(pw), SSL: &SSL{Mode: "require", Key: []byte(key)}}
	var sb strings.Builder
	logger := slog.New(slog.NewTextHandler(&sb, nil))
	logger.Info("x", "target", tg, "password", tg.Password)
	js, _ := json.Marshal(tg)
	for _, s := range []string{fmt.Sprint(tg), fmt.Sprintf("%+v", tg), fmt.Sprintf("%#v", tg), fmt.Sprintf("%s %q %x", tg.Password, tg.Password, tg.Password),
		fmt.Sprintf("%v", *tg.SSL), fmt.Sprintf("%+v", tg.SSL), string(js), sb.String()} {
		if strings.Contains(s, pw) || strings.Contains(s, "MIGHAgEAMBMG") || strings.Contains(s, "68756e746572") {
			t.Fatalf("secret printed: %s", s)
		}
	}
}

func TestScrub(t *testing.T) {
	pw := "p@ss w'rd/%"
	tg := Target{Password: []byte(pw), SSL: &SSL{Key: []byte("-----BEGIN KEY-----\nAAAABBBBCCCCDDDDEEEE\n-----END KEY-----")}}
	in := fmt.Sprintf("a %s b postgres://u:%s@h c %s d %q e AAAABBBBCCCCDDDDEEEE", pw, "p%40ss+w%27rd%2F%25", "p@ss%20w%27rd%2F%25", pw)
	out := scrub(in, tg)
	for _, leak := range []string{pw, "p%40ss", "p@ss%20w", "AAAABBBB", `w\'rd`, "w'rd"} {
		if strings.Contains(out, leak) {
			t.Fatalf("scrub left %q in %q", leak, out)
		}
	}
	res := describe(Target{Engine: MySQL, Host: "h", Port: 1, User: "u", Password: []byte(pw)}, ReasonAuthFailed, errors.New("denied for "+pw), time.Second)
	if strings.Contains(res, pw) || !strings.Contains(res, redacted) {
		t.Fatalf("describe: %q", res)
	}
}
