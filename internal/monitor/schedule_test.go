package monitor

import (
	"context"
	"testing"
	"time"
)

// TestScheduleCoalescesAndSkipsSupersededEvents: many requests for one
// connection make one pending test; a request during a test makes one more
// test soon after; a rate-limited connection waits for its Retry-After even
// when asked again; an event at or below the version seen is superseded;
// a deleted connection never comes back.
func TestScheduleCoalescesAndSkipsSupersededEvents(t *testing.T) {
	s := newSchedule(time.Hour, 10*time.Millisecond, 4)
	for v := uint64(1); v <= 1000; v++ {
		if !s.observe("a", v) {
			t.Fatalf("version %d reported superseded", v)
		}
		s.testSoon("a", "corr")
	}
	if s.observe("a", 999) || s.observe("a", 1000) {
		t.Fatal("an older event was not superseded")
	}
	if s.pending() != 1 || len(s.queue) != 1 {
		t.Fatalf("1,000 requests: %d pending, %d queued; want 1", s.pending(), len(s.queue))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := s.next(ctx)
	if err != nil || e.id != "a" || e.corr != "corr" {
		t.Fatalf("next: %+v %v", e, err)
	}
	s.testSoon("a", "again")
	s.testSoon("a", "again")
	if len(s.queue) != 0 {
		t.Fatal("a running connection was queued twice")
	}
	s.finish("a", time.Hour, time.Time{}, false)
	if e := s.byID["a"]; e.due.After(time.Now().Add(time.Minute)) || e.corr != "again" {
		t.Fatalf("a request during the test did not bring the next one forward: %+v", e)
	}
	e, _ = s.next(ctx)
	retryAt := time.Now().Add(30 * time.Second)
	s.finish("a", 30*time.Second, retryAt, false)
	s.testSoon("a", "limited")
	if e := s.byID["a"]; e.due.Before(retryAt) {
		t.Fatalf("a rate-limited connection was moved before its Retry-After: due %s", e.due)
	}
	s.remove("a")
	s.testSoon("a", "x")
	s.load("a")
	if s.pending() != 0 || len(s.queue) != 0 {
		t.Fatal("a deleted connection came back")
	}
}
