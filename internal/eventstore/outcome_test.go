package eventstore

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/connreg/registry/domain"
	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/devstack"
)

// replyHolder is a loopback TCP proxy between a NATS client and its server
// that can hold back everything the server sends (its answers) while letting
// the client's messages through: an answer lost on the way, for as long as
// the test wants.
type replyHolder struct {
	mu   sync.Mutex
	cond *sync.Cond
	held bool
	ln   net.Listener
}

func newReplyHolder(t *testing.T, upstream string) *replyHolder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyHolder{ln: ln}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() { p.release(); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := u.Read(buf)
					if n > 0 {
						p.mu.Lock()
						for p.held {
							p.cond.Wait()
						}
						p.mu.Unlock()
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

func (p *replyHolder) url() string { return "nats://" + p.ln.Addr().String() }

func (p *replyHolder) hold() { p.mu.Lock(); p.held = true; p.mu.Unlock() }

func (p *replyHolder) release() {
	p.mu.Lock()
	p.held = false
	p.mu.Unlock()
	p.cond.Broadcast()
}

// TestLostAnswerIsFoundOut: the server stores a create's event and its
// answer does not come back in time. The store must not report "unavailable,
// nothing written": it asks again (the message id makes the second publish
// answer with the stored sequence) and reports success when the answer comes,
// and when it cannot know, says that the outcome is unknown.
func TestLostAnswerIsFoundOut(t *testing.T) {
	srv, err := devstack.StartNATS(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	proxy := newReplyHolder(t, srv.URL()[len("nats://"):])
	nc, err := nats.Connect(proxy.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	f := fixtureOn(t, nc)
	const timeout = time.Second
	f.store.timeout = timeout

	for _, tc := range []struct {
		name    string
		holdFor time.Duration
		check   func(t *testing.T, seq uint64, err error)
	}{
		// The answer of the first publish is late; the second attempt's comes.
		{"answer late", timeout + timeout/2, func(t *testing.T, seq uint64, err error) {
			if err != nil || seq == 0 {
				t.Fatalf("a stored create answered %d, %v", seq, err)
			}
		}},
		// No answer in either attempt: it was stored, and unknown is the truth.
		{"no answer", 4 * timeout, func(t *testing.T, _ uint64, err error) {
			if !errors.Is(err, domain.ErrOutcomeUnknown) {
				t.Fatalf("err = %v, want the outcome unknown", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var released sync.WaitGroup
			f.store.beforeEvent = func() {
				proxy.hold()
				released.Add(1)
				go func() { defer released.Done(); time.Sleep(tc.holdFor); proxy.release() }()
			}
			id := uuid.NewString()
			seq, err := f.store.Append(t.Context(), createAppend(id, id))
			f.store.beforeEvent = nil
			tc.check(t, seq, err)
			released.Wait()
			// Either way the event is in the stream, once.
			last, err := f.stream.GetLastMsgForSubject(t.Context(), events.EventSubject(id))
			if err != nil {
				t.Fatalf("the event is not in the stream: %v", err)
			}
			if seq != 0 && last.Sequence != seq {
				t.Fatalf("answered sequence %d, stored at %d", seq, last.Sequence)
			}
		})
	}
	if n := f.count(t, events.EventSubjectFilter); n != 2 {
		t.Fatalf("%d events stored, want 2", n)
	}
}
