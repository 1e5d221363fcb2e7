package bootstrap_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The first half of this file is a downstream service as a team outside this
// repository would write it from the AsyncAPI document (events/asyncapi.yaml)
// and docs/events.md: plain nats.go, local types, no package of the registry.
// Keep it that way: it is the proof that the published contract is enough.

// dsEnvelope is the CloudEvents envelope, as much of it as this consumer uses.
type dsEnvelope struct {
	ID               string          `json:"id"`
	Type             string          `json:"type"`
	Time             time.Time       `json:"time"`
	AggregateID      string          `json:"aggregateid"`
	AggregateVersion uint64          `json:"aggregateversion"`
	Actor            string          `json:"actor"`
	Data             json.RawMessage `json:"data"`
}

type dsSealed struct {
	Scheme     string `json:"scheme"`
	KeyName    string `json:"keyName"`
	Ciphertext string `json:"ciphertext"`
}

type dsCreated struct {
	ConfigName string            `json:"configName"`
	Type       string            `json:"type"`
	Host       string            `json:"host"`
	Port       int               `json:"port"`
	Password   dsSealed          `json:"password"`
	Metadata   map[string]string `json:"metadata"`
}

type dsUpdated struct {
	Changed    []string          `json:"changed"`
	ConfigName *string           `json:"configName"`
	Host       *string           `json:"host"`
	Port       *int              `json:"port"`
	Metadata   map[string]string `json:"metadata"`
}

type dsDeleted struct {
	ConfigName string `json:"configName"`
}

// dsConnection is the downstream's own view of one connection.
type dsConnection struct {
	Name     string
	Host     string
	Metadata map[string]string
	Version  uint64
	Deleted  bool
	Types    []string
}

// dsProjection applies events one at a time. The events of one connection
// arrive in order, at least once: a version already applied is a redelivery
// and is skipped; a version that skips one is a gap, which must never happen.
type dsProjection struct {
	mu         sync.Mutex
	conns      map[string]*dsConnection
	applied    int
	duplicates int
	unknown    int
	problems   []string
}

func newDSProjection() *dsProjection { return &dsProjection{conns: map[string]*dsConnection{}} }

func (p *dsProjection) handle(msg jetstream.Msg) error {
	var env dsEnvelope
	if err := json.Unmarshal(msg.Data(), &env); err != nil {
		return fmt.Errorf("malformed envelope on %s: %w", msg.Subject(), err)
	}
	// The headers repeat the envelope: a router can look at them only.
	if h := msg.Headers(); h.Get("Connreg-Event-Type") != env.Type || h.Get("Connreg-Aggregate-Version") != strconv.FormatUint(env.AggregateVersion, 10) {
		return fmt.Errorf("headers %v disagree with the envelope %s v%d", h, env.Type, env.AggregateVersion)
	}
	if msg.Subject() != "connections.events."+env.AggregateID {
		return fmt.Errorf("event of %s on %s", env.AggregateID, msg.Subject())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[env.AggregateID]
	if c == nil {
		c = &dsConnection{}
		p.conns[env.AggregateID] = c
	}
	switch {
	case env.AggregateVersion <= c.Version:
		p.duplicates++
		return nil
	case env.AggregateVersion != c.Version+1:
		return fmt.Errorf("%s: version %d after %d", env.AggregateID, env.AggregateVersion, c.Version)
	}
	switch env.Type {
	case "connection.created.v1":
		var d dsCreated
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return err
		}
		c.Name, c.Host, c.Metadata = d.ConfigName, d.Host, d.Metadata
	case "connection.updated.v1":
		var d dsUpdated
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return err
		}
		if d.ConfigName != nil {
			c.Name = *d.ConfigName
		}
		if d.Host != nil {
			c.Host = *d.Host
		}
		if slices.Contains(d.Changed, "metadata") {
			c.Metadata = d.Metadata // absent: every label removed
		}
	case "connection.deleted.v1":
		var d dsDeleted
		if err := json.Unmarshal(env.Data, &d); err != nil {
			return err
		}
		c.Deleted = true
	default:
		// A type this consumer does not know yet: skip it, do not stop.
		p.unknown++
	}
	c.Version = env.AggregateVersion
	c.Types = append(c.Types, env.Type)
	p.applied++
	return nil
}

// dsSubscribe creates (or resumes) the durable consumer and applies every
// event to p until the returned stop is called. A message is acknowledged
// (and the acknowledgement confirmed) only once applied, so a crash
// redelivers it instead of losing it. Calling stop more than once is harmless.
func dsSubscribe(connect func(...nats.Option) (*nats.Conn, error), durable string, p *dsProjection) (stop func(), err error) {
	nc, err := connect(nats.Name(durable))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, "CONNECTIONS", jetstream.ConsumerConfig{
		Durable:       durable,
		FilterSubject: "connections.events.>",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    -1,
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		if err := p.handle(msg); err != nil {
			p.mu.Lock()
			p.problems = append(p.problems, err.Error())
			p.mu.Unlock()
			_ = msg.Term() // a poison message: park it, never loop on it
			return
		}
		ackCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := msg.DoubleAck(ackCtx); err != nil {
			p.mu.Lock()
			p.problems = append(p.problems, "ack: "+err.Error())
			p.mu.Unlock()
		}
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cc.Stop()
			<-cc.Closed()
			nc.Close()
		})
	}, nil
}

// The second half drives the registry through its API and checks what the
// downstream saw.

// dsExpectation is what the API answered, per connection.
type dsExpectation struct {
	name    string
	host    string
	deleted bool
	written bool // metadata set by two concurrent writers
	types   []string
}

func TestDownstreamDurableConsumerSeesEveryEventInOrder(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	p := newDSProjection()
	stop, err := dsSubscribe(h.svc.ConnectNATS, "downstream-audit", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	const n = 8
	var mu sync.Mutex
	want := map[string]*dsExpectation{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("downstream-%d", i)
			res := h.create(validBody(name))
			if res.status != http.StatusCreated {
				t.Errorf("create %s: %d %s", name, res.status, res.body)
				return
			}
			id := res.json(t)["id"].(string)
			e := &dsExpectation{name: name, host: "db.example.com", written: true, types: []string{"connection.created.v1"}}
			// Two writers on the same connection at once: both apply, one after the other.
			var inner sync.WaitGroup
			for w := range 2 {
				inner.Add(1)
				go func() {
					defer inner.Done()
					res := h.patch(id, map[string]any{"metadata": map[string]any{"writer": strconv.Itoa(w)}}, nil)
					if res.status != http.StatusOK {
						t.Errorf("patch %s: %d %s", name, res.status, res.body)
					}
				}()
			}
			inner.Wait()
			e.types = append(e.types, "connection.updated.v1", "connection.updated.v1")
			e.name, e.host = name+"-moved", fmt.Sprintf("db%d.example.com", i)
			if res := h.patch(id, map[string]any{"configName": e.name, "host": e.host, "password": "moved-pw"}, nil); res.status != http.StatusOK {
				t.Errorf("rename %s: %d %s", name, res.status, res.body)
			}
			e.types = append(e.types, "connection.updated.v1")
			if i%2 == 0 {
				if res := h.do(http.MethodDelete, "/v1/management/connections/"+id, nil, nil); res.status != http.StatusNoContent {
					t.Errorf("delete %s: %d %s", name, res.status, res.body)
				}
				e.deleted = true
				e.types = append(e.types, "connection.deleted.v1")
			}
			mu.Lock()
			want[id] = e
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	total := 0
	for _, e := range want {
		total += len(e.types)
	}
	dsWaitFor(t, p, total)
	stop()
	dsCheck(t, p, want)

	// The consumer is durable: while it is away the registry goes on, and
	// when it comes back under the same name it gets exactly what it missed.
	var alive []string
	for id, e := range want {
		if !e.deleted {
			alive = append(alive, id)
		}
	}
	for _, id := range alive {
		e := want[id]
		e.host = "back." + e.host
		if res := h.patch(id, map[string]any{"host": e.host, "password": "moved-pw"}, nil); res.status != http.StatusOK {
			t.Fatalf("patch while away: %d %s", res.status, res.body)
		}
		e.types = append(e.types, "connection.updated.v1")
	}
	res := h.create(validBody("downstream-late"))
	if res.status != http.StatusCreated {
		t.Fatalf("create while away: %d %s", res.status, res.body)
	}
	want[res.json(t)["id"].(string)] = &dsExpectation{name: "downstream-late", host: "db.example.com", types: []string{"connection.created.v1"}}
	total += len(alive) + 1

	stop, err = dsSubscribe(h.svc.ConnectNATS, "downstream-audit", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	dsWaitFor(t, p, total)
	dsCheck(t, p, want)
}

// dsWaitFor polls until the projection applied total events, then makes sure
// nothing more arrives for a moment (an extra event would be a bug too).
func dsWaitFor(t *testing.T, p *dsProjection, total int) {
	t.Helper()
	applied := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.applied + len(p.problems)
	}
	eventually(t, fmt.Sprintf("%d events downstream", total), func() bool { return applied() >= total })
	quiet := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(quiet) {
		if got := applied(); got > total {
			t.Fatalf("the downstream saw %d events, %d were written", got, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dsCheck(t *testing.T, p *dsProjection, want map[string]*dsExpectation) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, problem := range p.problems {
		t.Error(problem)
	}
	if p.duplicates != 0 || p.unknown != 0 {
		t.Errorf("%d redeliveries and %d unknown types after confirmed acks", p.duplicates, p.unknown)
	}
	if len(p.conns) != len(want) {
		t.Errorf("the downstream knows %d connections, %d were written", len(p.conns), len(want))
	}
	for id, e := range want {
		c := p.conns[id]
		if c == nil {
			t.Errorf("%s (%s) never seen downstream", id, e.name)
			continue
		}
		if !slices.Equal(c.Types, e.types) || c.Version != uint64(len(e.types)) {
			t.Errorf("%s: saw %v up to version %d, want %v", e.name, c.Types, c.Version, e.types)
		}
		if w := c.Metadata["writer"]; e.written && w != "0" && w != "1" {
			t.Errorf("%s: metadata %v, want the last writer's", e.name, c.Metadata)
		}
		if c.Name != e.name || c.Host != e.host || c.Deleted != e.deleted {
			t.Errorf("%s: downstream has name %q host %q deleted %v, want %q %q %v", id, c.Name, c.Host, c.Deleted, e.name, e.host, e.deleted)
		}
	}
}
