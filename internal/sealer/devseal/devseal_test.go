package devseal_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/connreg/registry/internal/sealer/devseal"
	"github.com/connreg/registry/internal/sealer/sealertest"
)

func TestContract(t *testing.T) {
	sealertest.Run(t, func(t *testing.T) sealertest.Sealer {
		s, err := devseal.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestKeyFileSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	first, err := devseal.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := first.Seal(context.Background(), "conn-1", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, devseal.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode %o, want 600", perm)
	}

	restarted, err := devseal.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := restarted.Unseal(context.Background(), "conn-1", sealed)
	if err != nil || string(got) != "pw" {
		t.Fatalf("after restart: Unseal = %q, %v", got, err)
	}

	other, err := devseal.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Unseal(context.Background(), "conn-1", sealed); !errors.Is(err, devseal.ErrRejected) {
		t.Errorf("another key file: err = %v, want ErrRejected", err)
	}
}

func TestConcurrentStartAgreesOnOneKey(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	sealers := make([]*devseal.Sealer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := devseal.New(dir)
			if err != nil {
				t.Error(err)
				return
			}
			sealers[i] = s
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	sealed, err := sealers[0].Seal(context.Background(), "c", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sealers {
		if _, err := s.Unseal(context.Background(), "c", sealed); err != nil {
			t.Errorf("sealer %d has another key: %v", i, err)
		}
	}
}

func TestCorruptKeyFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, devseal.KeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devseal.New(dir); err == nil {
		t.Fatal("New accepted a corrupt key file")
	}
}

func TestAllowed(t *testing.T) {
	for env, want := range map[string]error{
		"":            nil,
		"development": nil,
		"test":        nil,
		"production":  devseal.ErrProduction,
		" Production": devseal.ErrProduction,
		"prod":        devseal.ErrProduction,
	} {
		if got := devseal.Allowed(env); !errors.Is(got, want) || (want == nil && got != nil) {
			t.Errorf("Allowed(%q) = %v, want %v", env, got, want)
		}
	}
}
