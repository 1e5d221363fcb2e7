package vault_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/connreg/registry/internal/sealer/vault"
	"github.com/connreg/registry/internal/sealer/vault/vaulttest"
)

// BenchmarkSeal compares one transit request per call with coalesced batch
// requests, against a real Vault. "single" runs calls one after another
// (latency of a lone call); the parallel cases run 64 callers per CPU.
func BenchmarkSeal(b *testing.B) {
	srv := vaulttest.Start(b)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newSealer := func(b *testing.B, maxBatch int) *vault.Sealer {
		cfg := config(srv)
		cfg.MaxBatch = maxBatch
		s, err := vault.New(context.Background(), cfg, quiet)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	plaintext := []byte("a-database-password-of-32-bytes!")

	for _, bc := range []struct {
		name     string
		maxBatch int
		parallel bool
	}{
		{"single", 1, false},
		{"single-parallel", 1, true},
		{"coalesced-serial", vault.DefaultMaxBatch, false},
		{"coalesced-parallel", vault.DefaultMaxBatch, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := newSealer(b, bc.maxBatch)
			ctx := context.Background()
			var n atomic.Int64
			before := s.Stats()
			b.ResetTimer()
			if bc.parallel {
				b.SetParallelism(64)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.Seal(ctx, fmt.Sprint(n.Add(1)), plaintext); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for i := 0; b.Loop(); i++ {
					if _, err := s.Seal(ctx, fmt.Sprint(i), plaintext); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			after := s.Stats()
			if reqs := after.Requests - before.Requests; reqs > 0 {
				b.ReportMetric(float64(after.Items-before.Items)/float64(reqs), "items/request")
			}
		})
	}
}
