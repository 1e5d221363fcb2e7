package monitor

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
)

// schedule is the monitor's plan: at most one pending test per connection
// (coalesced: a thousand events for one connection make one test), ordered
// by due time. It is also the message.Subscriber of the "connection-tests"
// handler: it hands out a message when a test falls due and keeps at most
// concurrency of them unacknowledged, which is how MONITOR_CONCURRENCY bounds
// the tests in flight.
type schedule struct {
	interval time.Duration
	soon     time.Duration
	slots    chan struct{}
	now      func() time.Time

	mu      sync.Mutex
	queue   entryHeap
	byID    map[string]*entry
	seen    map[string]uint64 // the newest aggregate version seen per connection
	deleted map[string]bool
	wake    chan struct{}
}

type entry struct {
	id        string
	due       time.Time
	notBefore time.Time // the rate limiter's Retry-After: nothing moves a test before it
	corr      string    // correlation id of the event that asked for the test, if any
	running   bool
	again     bool // an event asked for a test while one was running
	index     int
}

func newSchedule(interval, soon time.Duration, concurrency int) *schedule {
	return &schedule{
		interval: interval, soon: soon, slots: make(chan struct{}, concurrency), now: time.Now,
		byID: map[string]*entry{}, seen: map[string]uint64{}, deleted: map[string]bool{},
		wake: make(chan struct{}, 1),
	}
}

// jitter spreads periodic tests by ±10% of the interval, so connections
// loaded or created together do not stay in lockstep.
func (s *schedule) jitter() time.Duration {
	span := s.interval / 5
	if span <= 0 {
		return s.interval
	}
	return s.interval - span/2 + rand.N(span)
}

// observe records version v of connection id and reports whether the event
// is new: an event at or below the version already seen is superseded.
func (s *schedule) observe(id string, v uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v <= s.seen[id] {
		return false
	}
	s.seen[id] = v
	return true
}

// load schedules a connection known at start at a random point of the
// first interval, unless an event already scheduled it.
func (s *schedule) load(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted[id] || s.byID[id] != nil {
		return
	}
	s.put(&entry{id: id, due: s.now().Add(rand.N(s.interval))})
}

// testSoon asks for a test of id soon (after a create or a change of the
// target or credentials), moving its pending test earlier if needed.
func (s *schedule) testSoon(id, corr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted[id] {
		return
	}
	due := s.now().Add(s.soon)
	e := s.byID[id]
	switch {
	case e == nil:
		s.put(&entry{id: id, due: due, corr: corr})
	case e.running:
		e.again, e.corr = true, corr
	default:
		e.corr = corr
		if due.Before(e.due) {
			e.due = later(due, e.notBefore)
			heap.Fix(&s.queue, e.index)
			s.signal()
		}
	}
}

// remove takes a deleted connection off the schedule for good.
func (s *schedule) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted[id] = true
	if e := s.byID[id]; e != nil {
		if !e.running {
			heap.Remove(&s.queue, e.index)
		}
		delete(s.byID, id)
	}
}

// finish reschedules id after a test: after the given delay, not before
// notBefore (a rate limit), or soon if an event asked for a test meanwhile.
// forget drops it (the connection no longer exists).
func (s *schedule) finish(id string, after time.Duration, notBefore time.Time, forget bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byID[id]
	if e == nil || !e.running {
		return // deleted meanwhile, or already finished
	}
	e.running = false
	if forget {
		delete(s.byID, id)
		return
	}
	now := s.now()
	e.due, e.notBefore = now.Add(after), notBefore
	if e.again {
		e.due = now.Add(s.soon)
	} else {
		e.corr = ""
	}
	e.again = false
	e.due = later(e.due, notBefore)
	heap.Push(&s.queue, e)
	s.signal()
}

func (s *schedule) put(e *entry) {
	s.byID[e.id] = e
	heap.Push(&s.queue, e)
	s.signal()
}

func (s *schedule) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// pending reports how many connections are scheduled (running included).
func (s *schedule) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// next waits for the earliest test to fall due and marks it running.
func (s *schedule) next(ctx context.Context) (*entry, error) {
	for {
		s.mu.Lock()
		var wait time.Duration = time.Hour
		if len(s.queue) > 0 {
			e := s.queue[0]
			if wait = e.due.Sub(s.now()); wait <= 0 {
				heap.Pop(&s.queue)
				e.running = true
				s.mu.Unlock()
				return e, nil
			}
		}
		s.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// nackDelay is how long a test whose handler failed (after the Retry
// middleware gave up) waits before its next attempt.
func (s *schedule) nackDelay() time.Duration { return min(s.interval, 30*time.Second) }

var _ message.Subscriber = (*schedule)(nil)

// Subscribe hands out one message per due test, its payload the connection
// id, with the correlation id of the event that asked for it or a new one.
// An acknowledged message frees its slot (the handler has rescheduled the
// connection); a nacked one is retried after nackDelay.
func (s *schedule) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for {
			select {
			case s.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			e, err := s.next(ctx)
			if err != nil {
				return
			}
			s.mu.Lock()
			id, corr := e.id, e.corr
			s.mu.Unlock()
			msg := message.NewMessage(uuid.NewString(), []byte(id))
			if corr == "" {
				corr = "monitor-" + msg.UUID
			}
			middleware.SetCorrelationID(corr, msg)
			msg.SetContext(ctx)
			select {
			case out <- msg:
			case <-ctx.Done():
				return
			}
			go func() {
				defer func() { <-s.slots }()
				select {
				case <-msg.Acked():
				case <-msg.Nacked():
					s.finish(id, s.nackDelay(), time.Time{}, false)
				case <-ctx.Done():
				}
			}()
		}
	}()
	return out, nil
}

func (s *schedule) Close() error { return nil }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// entryHeap orders entries by due time.
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
