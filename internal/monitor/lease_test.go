package monitor_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/internal/devstack"
	"github.com/connreg/registry/internal/monitor"
)

func startNATS(t *testing.T) *devstack.NATS {
	t.Helper()
	n, err := devstack.StartNATS(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// activity records when each holder's work ran, to check that no two overlap.
type activity struct {
	mu     sync.Mutex
	active map[string]bool
	spans  []string
	overlp bool
}

func (a *activity) work(name string) func(context.Context) error {
	return func(ctx context.Context) error {
		a.mu.Lock()
		for other, on := range a.active {
			if on && other != name {
				a.overlp = true
			}
		}
		a.active[name] = true
		a.spans = append(a.spans, name)
		a.mu.Unlock()
		<-ctx.Done()
		a.mu.Lock()
		a.active[name] = false
		a.mu.Unlock()
		return nil
	}
}

func (a *activity) is(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.active[name]
}

// TestLeaseOneActiveStandbyTakesOver: of two processes one is active; when
// the active one is cut off from NATS (it cannot renew, as after a crash),
// the standby takes over once the key expired, never before the first one
// stopped; a clean stop hands over at once.
func TestLeaseOneActiveStandbyTakesOver(t *testing.T) {
	n := startNATS(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	const ttl = 900 * time.Millisecond
	act := &activity{active: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	run := func(name string, js jetstream.JetStream, ctx context.Context) chan error {
		l, err := monitor.NewLease(ctx, js, "monitor", name, ttl, logger)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx, act.work(name)) }()
		return done
	}
	ncA, jsA := connect(t, n.URL())
	_, jsB := connect(t, n.URL())
	_, jsC := connect(t, n.URL())
	doneA := run("a", jsA, ctx)
	eventually(t, "a active", 5*time.Second, func() bool { return act.is("a") })
	ctxB, cancelB := context.WithCancel(ctx)
	doneB := run("b", jsB, ctxB)

	// While a renews, b stays standby: a holds the key through several TTLs.
	kvWatch, err := jsC.KeyValue(ctx, monitor.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	first, err := kvWatch.Get(ctx, "monitor")
	if err != nil || string(first.Value()) != "a" {
		t.Fatalf("lease key: %v %v", first, err)
	}
	eventually(t, "a renews its lease", 5*time.Second, func() bool {
		e, err := kvWatch.Get(ctx, "monitor")
		return err == nil && string(e.Value()) == "a" && e.Revision() >= first.Revision()+3
	})
	if act.is("b") {
		t.Fatal("b active while a renews")
	}

	// a is cut off: it stops, then b takes over.
	ncA.Close()
	eventually(t, "a stops after it cannot renew", 5*time.Second, func() bool { return !act.is("a") })
	eventually(t, "b takes over", 10*time.Second, func() bool { return act.is("b") })

	// A clean stop of b hands over to c without waiting for the TTL.
	doneC := run("c", jsC, ctx)
	stopped := time.Now()
	cancelB()
	if err := <-doneB; err != nil {
		t.Fatalf("b: %v", err)
	}
	eventually(t, "c takes over", 5*time.Second, func() bool { return act.is("c") })
	if waited := time.Since(stopped); waited > 3*ttl {
		t.Logf("c took over %s after b's clean stop (TTL %s)", waited, ttl)
	}
	cancel()
	for name, done := range map[string]chan error{"a": doneA, "c": doneC} {
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	act.mu.Lock()
	defer act.mu.Unlock()
	if act.overlp {
		t.Fatalf("two holders were active at once: %v", act.spans)
	}
	if len(act.spans) != 3 {
		t.Fatalf("activity spans %v; want a, b, c", act.spans)
	}
}
