package dbprobe

import (
	"testing"
	"time"
)

func TestRateLimiterDefaults(t *testing.T) {
	r := NewRateLimiter(0, 0)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		if ok, _ := r.Allow("conn-1", now); !ok {
			t.Fatalf("test %d refused within the burst", i+1)
		}
	}
	ok, retry := r.Allow("conn-1", now)
	if ok || retry != 6*time.Second {
		t.Fatalf("11th test: ok=%v retry=%s, want refused with 6s", ok, retry)
	}
	if ok, _ := r.Allow("conn-2", now); !ok {
		t.Fatal("another connection must have its own quota")
	}
	if ok, _ := r.Allow("conn-1", now.Add(6*time.Second)); !ok {
		t.Fatal("one test must be earned back after 6s")
	}
	if ok, retry := r.Allow("conn-1", now.Add(7*time.Second)); ok || retry != 5*time.Second {
		t.Fatalf("got ok=%v retry=%s, want refused with 5s", ok, retry)
	}
	// After a full minute of silence the id is forgotten and the burst is whole again.
	later := now.Add(2 * time.Minute)
	for i := 0; i < 10; i++ {
		if ok, _ := r.Allow("conn-1", later); !ok {
			t.Fatalf("burst after idle: test %d refused", i+1)
		}
	}
	if _, kept := r.tat["conn-2"]; kept {
		t.Fatal("idle ids must be swept")
	}
}

func TestRateLimiterCustom(t *testing.T) {
	r := NewRateLimiter(2, time.Second)
	now := time.Unix(0, 0)
	r.Allow("a", now)
	r.Allow("a", now)
	if ok, retry := r.Allow("a", now.Add(100*time.Millisecond)); ok || retry != 400*time.Millisecond {
		t.Fatalf("got ok=%v retry=%s", ok, retry)
	}
}
