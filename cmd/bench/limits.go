package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/connreg/registry/commands"
	"github.com/connreg/registry/internal/sealer/devseal"
	"github.com/connreg/registry/internal/sealer/vault"
	"github.com/connreg/registry/readmodel"
)

// Limits are the machine's ceilings for each part of the path, measured in
// the same run on the same servers.
type Limits struct {
	Publish    []RateResult `json:"publish"`
	BulkUpsert RateResult   `json:"bulkUpsert"`
	// BulkInsert is BulkWrite of InsertOne models, what the projector
	// sends for new connections: the tighter ceiling for replay.
	BulkInsert RateResult   `json:"bulkInsert"`
	Sealer     []RateResult `json:"sealer"`
}

// RateResult is a raw operation repeated for a while at some concurrency.
type RateResult struct {
	Name        string  `json:"name"`
	Concurrency int     `json:"concurrency"`
	Bytes       int     `json:"bytes,omitempty"`
	BatchSize   int     `json:"batchSize,omitempty"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"perSecond"`
	Latency     Latency `json:"latency"`
	Note        string  `json:"note,omitempty"`
}

// hammer runs op from conc goroutines for d; op reports how many units it
// did (a bulk write does many).
func hammer(ctx context.Context, conc int, d time.Duration, op func(ctx context.Context, worker int, i int64) (int, error)) RateResult {
	return hammerMin(ctx, conc, d, 0, op)
}

// hammerMin is hammer with at least minOps calls per worker, for operations
// slower than the duration.
func hammerMin(ctx context.Context, conc int, d time.Duration, minOps int64, op func(ctx context.Context, worker int, i int64) (int, error)) RateResult {
	rec := newRecorder()
	var units atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var log workerLog
			for i := int64(0); (i < minOps || time.Now().Before(deadline)) && ctx.Err() == nil; i++ {
				t := time.Now()
				n, err := op(ctx, w, i)
				if err != nil {
					log.failure(0, err.Error())
					continue
				}
				log.success(time.Since(t))
				units.Add(int64(n))
			}
			rec.merge(&log)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	return RateResult{
		Concurrency: conc, Ops: units.Load(), Errors: rec.errors,
		Seconds: round(elapsed.Seconds()), PerSecond: perSecond(units.Load(), elapsed), Latency: summarize(rec.lat),
	}
}

// rawPublish measures synchronous js.Publish of an event-sized message to a
// separate file-backed stream on the service's NATS server.
func rawPublish(ctx context.Context, st *stack, runID string, size int, d time.Duration) ([]RateResult, error) {
	name := "BENCH_RAW_" + runID
	subject := "benchraw." + runID
	if _, err := st.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{subject + ".>"}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld, Duplicates: 2 * time.Minute,
		AllowAtomicPublish: true, AllowDirect: true,
	}); err != nil {
		return nil, fmt.Errorf("raw publish stream: %w", err)
	}
	defer func() { _ = st.js.DeleteStream(context.Background(), name) }()
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	var out []RateResult
	for _, conc := range []int{1, 64} {
		r := hammer(ctx, conc, d, func(ctx context.Context, w int, _ int64) (int, error) {
			_, err := st.js.Publish(ctx, subject+"."+strconv.Itoa(w), payload)
			return 1, err
		})
		r.Name = fmt.Sprintf("js.Publish %d B, file stream", size)
		r.Bytes = size
		out = append(out, r)
	}
	// The primitive a create uses: an atomic batch of a ~100-byte claim and
	// the event, committed by a request (as jetstream.Store.publish does).
	claim := payload[:100]
	for _, conc := range []int{1, 64} {
		r := hammer(ctx, conc, d, func(ctx context.Context, w int, i int64) (int, error) {
			id := nuid.Next()
			m1 := nats.NewMsg(subject + ".claim." + id)
			m1.Data = claim
			m1.Header.Set("Nats-Batch-Id", id)
			m1.Header.Set("Nats-Batch-Sequence", "1")
			m2 := nats.NewMsg(subject + ".event." + id)
			m2.Data = payload
			m2.Header.Set("Nats-Batch-Id", id)
			m2.Header.Set("Nats-Batch-Sequence", "2")
			m2.Header.Set("Nats-Batch-Commit", "1")
			if err := st.nc.PublishMsg(m1); err != nil {
				return 0, err
			}
			resp, err := st.nc.RequestMsgWithContext(ctx, m2)
			if err != nil {
				return 0, err
			}
			if bytes.Contains(resp.Data, []byte(`"error"`)) {
				return 0, fmt.Errorf("batch refused: %s", resp.Data)
			}
			return 1, nil
		})
		r.Name = fmt.Sprintf("atomic batch (100 B claim + %d B event), file stream", size)
		r.Bytes = size + 100
		out = append(out, r)
	}
	return out, nil
}

// defaultBulkBatch is the size of one raw bulk write, close to the
// projector's batches (bootstrap.ProjectorBatch).
const defaultBulkBatch = 500

// rawBulkUpsert measures the read-model store's own bulk writes of
// bulkUpsertBatch (defaultBulkBatch unless a test asks for less)
// read-model-sized documents (a real one, under new ids) into a scratch read
// model of the service's kind, from one writer like the projector: unguarded
// upserts (Overwrite, what replay recovers with) and guarded inserts (Write
// of new documents, what the projector does for creates).
func rawBulkUpsert(ctx context.Context, st *stack, runID string, sample *readmodel.Document, d time.Duration, bulkUpsertBatch int) (RateResult, RateResult, error) {
	repo, drop, err := st.scratchReadModel(ctx, "connreg_scratch_"+runID)
	if err != nil {
		return RateResult{}, RateResult{}, err
	}
	defer drop()
	r := hammerMin(ctx, 1, d, 3, func(ctx context.Context, _ int, i int64) (int, error) {
		docs := make([]*readmodel.Document, 0, bulkUpsertBatch)
		for j := range bulkUpsertBatch {
			doc := *sample
			doc.ID = fmt.Sprintf("%s-%d-%d", runID, i, j)
			docs = append(docs, &doc)
		}
		if err := repo.Overwrite(ctx, docs); err != nil {
			return 0, err
		}
		return len(docs), nil
	})
	r.Name = fmt.Sprintf("Overwrite of %d documents (upserts, new ids)", bulkUpsertBatch)
	r.BatchSize = bulkUpsertBatch
	ins := hammerMin(ctx, 1, d, 3, func(ctx context.Context, _ int, i int64) (int, error) {
		writes := make([]readmodel.Write, 0, bulkUpsertBatch)
		for j := range bulkUpsertBatch {
			doc := *sample
			doc.ID = fmt.Sprintf("%s-ins-%d-%d", runID, i, j)
			writes = append(writes, readmodel.Write{Doc: &doc})
		}
		if err := repo.Write(ctx, writes); err != nil {
			return 0, err
		}
		return len(writes), nil
	})
	ins.Name = fmt.Sprintf("Write of %d new documents (guarded inserts)", bulkUpsertBatch)
	ins.BatchSize = bulkUpsertBatch
	return r, ins, nil
}

// rawSeal measures the sealers: the development sealer always, Vault
// transit (one request per call, and coalesced) when VAULT_ADDR is set.
func rawSeal(ctx context.Context, dir string, d time.Duration) ([]RateResult, error) {
	plaintext := []byte("secretpassword-0123456789abcdef")
	measure := func(name string, s commands.Sealer) []RateResult {
		var out []RateResult
		for _, conc := range []int{1, 64} {
			r := hammer(ctx, conc, d, func(ctx context.Context, w int, i int64) (int, error) {
				_, err := s.Seal(ctx, "bench-"+strconv.Itoa(w)+"-"+strconv.FormatInt(i, 10), plaintext)
				return 1, err
			})
			r.Name = name
			out = append(out, r)
		}
		return out
	}
	dev, err := devseal.New(filepath.Join(dir, "raw-sealer"))
	if err != nil {
		return nil, err
	}
	out := measure("devseal AES-GCM", dev)
	if os.Getenv("VAULT_ADDR") == "" {
		return out, nil
	}
	cfg, err := vault.ConfigFromEnv(os.Getenv)
	if err != nil {
		return out, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, v := range []struct {
		name     string
		maxBatch int
	}{{"vault transit, one request per call", 1}, {"vault transit, coalesced", vault.DefaultMaxBatch}} {
		c := cfg
		c.MaxBatch = v.maxBatch
		s, err := vault.New(ctx, c, quiet)
		if err != nil {
			return out, err
		}
		out = append(out, measure(v.name, s)...)
		_ = s.Close()
	}
	return out, nil
}
