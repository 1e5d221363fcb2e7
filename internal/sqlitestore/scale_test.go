package sqlitestore_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connreg/registry/internal/sqlitestore"
	"github.com/connreg/registry/readmodel"
)

var benchMax = flag.Int("scale.max", 50_000, "largest read model BenchmarkScale fills (1000000 for the issue's table)")

func scaleDoc(i int) *readmodel.Document {
	name := fmt.Sprintf("scale-%07d", i)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	return &readmodel.Document{
		ID: fmt.Sprintf("0190a1b2-0000-7000-8000-%012d", i), Version: 1, Sequence: uint64(i + 1), Organization: "default",
		ConfigName: name, ConfigNameKey: strings.ToLower(name), ProductName: fmt.Sprintf("product-%d", i%10),
		Type: "POSTGRESQL", Host: fmt.Sprintf("db-%d.example.com", i%100), Port: 5432, DatabaseName: "mydatabase",
		UserName: "dbuser", Schema: "public", SSL: &readmodel.SSL{Mode: "require"},
		Metadata:  map[string]string{"environment": "production", "team": "data-engineering"},
		CreatedAt: at, UpdatedAt: at,
	}
}

// BenchmarkScale re-measures the table on this adapter: a guarded
// replace by id (what every PATCH, DELETE and test costs the projector), a
// read by id, and an insert, each at several read-model sizes. Flat from
// 1,000 up is the goal. Run with -scale.max=1000000 for the full table:
//
//	go test ./internal/sqlitestore -run '^$' -bench Scale -benchtime 2000x -scale.max 1000000
func BenchmarkScale(b *testing.B) {
	dir := b.TempDir()
	r, err := sqlitestore.Open(b.Context(), dir, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { r.Close(b.Context()) }()
	filled := 0
	fill := func(n int) {
		for filled < n {
			batch := min(1000, n-filled)
			writes := make([]readmodel.Write, batch)
			for j := range batch {
				writes[j] = readmodel.Write{Doc: scaleDoc(filled + j)}
			}
			if err := r.Write(b.Context(), writes); err != nil {
				b.Fatal(err)
			}
			filled += batch
		}
	}
	versions := map[int]uint64{}
	next := 10_000_000
	for _, size := range []int{1_000, 5_000, 20_000, 50_000, 200_000, 1_000_000} {
		if size > *benchMax {
			break
		}
		fill(size)
		b.Run(fmt.Sprintf("ReplaceOne/%d", size), func(b *testing.B) {
			defer reportCPU(b)()
			for b.Loop() {
				i := rand.IntN(size)
				d := scaleDoc(i)
				prev := max(1, versions[i])
				d.Version, d.Host = prev+1, "moved.example.com"
				if err := r.Write(b.Context(), []readmodel.Write{{Doc: d, Previous: prev}}); err != nil {
					b.Fatal(err)
				}
				versions[i] = d.Version
			}
		})
		b.Run(fmt.Sprintf("FindOne/%d", size), func(b *testing.B) {
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := r.Get(b.Context(), scaleDoc(rand.IntN(size)).ID); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("InsertOne/%d", size), func(b *testing.B) {
			defer reportCPU(b)()
			for b.Loop() {
				d := scaleDoc(next)
				next++
				if err := r.Write(b.Context(), []readmodel.Write{{Doc: d}}); err != nil {
					b.Fatal(err)
				}
			}
		})
		// What a restart of the API costs at this size: opening the store
		// and the first page (nothing is loaded into memory).
		b.Run(fmt.Sprintf("Reopen/%d", size), func(b *testing.B) {
			for b.Loop() {
				if err := r.Close(b.Context()); err != nil {
					b.Fatal(err)
				}
				if r, err = sqlitestore.Open(b.Context(), dir, time.Minute); err != nil {
					b.Fatal(err)
				}
				if _, err := r.List(b.Context(), readmodel.ListQuery{Limit: 20}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("ListProductPage/%d", size), func(b *testing.B) {
			defer reportCPU(b)()
			for b.Loop() {
				if _, err := r.List(b.Context(), readmodel.ListQuery{ProductName: "product-3", Limit: 20}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportCPU adds the process's CPU time per operation (getrusage) to a
// benchmark's results: on a machine shared with other work it moves far less
// than the wall-clock time per operation.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
