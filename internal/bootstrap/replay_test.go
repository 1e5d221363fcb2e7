package bootstrap_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/eventstore"
	"github.com/connreg/registry/internal/mongostore"
	"github.com/connreg/registry/readmodel"
)

// jetStream connects to the service's NATS the way `projector replay` does,
// as a separate client.
func (h *harness) jetStream() jetstream.JetStream {
	h.t.Helper()
	nc, err := h.svc.ConnectNATS()
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		h.t.Fatal(err)
	}
	return js
}

// expectVersions checks that the active read model holds every connection
// of want at its version (0: deleted) and that the API answers for it.
func (h *harness) expectVersions(want map[string]uint64) {
	h.t.Helper()
	repo := h.svc.ActiveReadModel()
	for id, v := range want {
		eventually(h.t, "document "+id+" in "+repo.Collection(), func() bool {
			d, err := repo.Get(context.Background(), id)
			return err == nil && (d.Version == v || v == 0 && d.Deleted)
		})
		res := h.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil)
		if v == 0 && res.status != http.StatusNotFound || v != 0 && (res.status != http.StatusOK || res.header.Get("ETag") != fmt.Sprintf(`"%d"`, v)) {
			h.t.Fatalf("GET %s: %d %s (want version %d)", id, res.status, res.body, v)
		}
	}
}

func quietLogger() *slog.Logger {
	if os.Getenv("REPLAY_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestReplayWhileServingSwitchesGenerationsAndVerifies(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	want := map[string]uint64{}
	for i := range 12 {
		id, _ := h.mustCreate(fmt.Sprintf("before-%02d", i))
		want[id] = 1
		switch i % 3 {
		case 1:
			if r := h.patch(id, map[string]any{"host": "patched.example.com", "password": "moved-pw"}, nil); r.status != http.StatusOK {
				t.Fatalf("patch: %d %s", r.status, r.body)
			}
			want[id] = 2
		case 2:
			if r := h.do(http.MethodDelete, "/v1/management/connections/"+id, nil, nil); r.status != http.StatusNoContent {
				t.Fatalf("delete: %d %s", r.status, r.body)
			}
			want[id] = 0
		}
	}

	// Keep creating through the API while the replay runs and after it.
	var (
		mu      sync.Mutex
		during  = map[string]uint64{}
		stop    = make(chan struct{})
		done    = make(chan struct{})
		failure error
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			res := h.create(validBody(fmt.Sprintf("during-%03d", i)))
			mu.Lock()
			if res.status != http.StatusCreated {
				failure = fmt.Errorf("create during replay: %d %s", res.status, res.body)
				mu.Unlock()
				return
			}
			during[res.json(t)["id"].(string)] = 1
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()

	js := h.jetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := bootstrap.Replay(ctx, js, h.svc.ReadModel, quietLogger(), bootstrap.ReplayOptions{Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	if res.Generation != 1 || res.Previous != 0 || res.Collection != "connections_g1" || res.Consumer != "readmodel-projector-g1" || res.Resumed {
		t.Fatalf("replay result %+v", res)
	}
	eventually(t, "the service reads generation 1", func() bool { return h.svc.ActiveReadModel().Collection() == "connections_g1" })
	time.Sleep(300 * time.Millisecond) // a few creates after the switch
	close(stop)
	<-done
	if failure != nil {
		t.Fatal(failure)
	}
	if len(during) == 0 {
		t.Fatal("nothing was created during the replay")
	}
	h.expectVersions(want)
	h.expectVersions(during)

	// Lists read the new generation: every live connection, newest first.
	live := len(during)
	for _, v := range want {
		if v != 0 {
			live++
		}
	}
	page := h.list("limit=100", map[string]string{"X-Product-Name": "reports"})
	if page["total"] != float64(live) {
		t.Fatalf("list total %v, want %d", page["total"], live)
	}
	// The old collection stays; the new one is complete on its own.
	if n, err := h.svc.ReadModel.WithCollection(mongostore.CollectionFor(1)).List(ctx, listAll()); err != nil || n.Total != int64(live) {
		t.Fatalf("generation 1 lists %d (%v), want %d", n.Total, err, live)
	}

	// Verify: no difference; then tamper with one document and see it.
	eventually(t, "projector caught up", func() bool {
		p, err := eventstore.Progress(ctx, js, "readmodel-projector-g1")
		return err == nil && p.Pending == 0 && p.AckPending == 0
	})
	v, err := bootstrap.Verify(ctx, js, h.svc.ReadModel, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Differences) != 0 || v.Generation != 1 || v.Documents != len(want)+len(during) || v.Through == 0 {
		t.Fatalf("verify: %+v", v)
	}
	var target string
	for id, ver := range want {
		if ver == 2 {
			target = id
		}
	}
	doc, err := h.svc.ActiveReadModel().Get(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	doc.Host = "tampered.example.com"
	if err := h.svc.ActiveReadModel().ReplaceDocument(ctx, doc); err != nil {
		t.Fatal(err)
	}
	v, err = bootstrap.Verify(ctx, js, h.svc.ReadModel, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Differences) != 1 || v.Differences[0].ID != target || v.Differences[0].Field != "host" {
		t.Fatalf("verify after tampering: %+v", v.Differences)
	}

	// A restart reads and projects generation 1.
	dir := h.dir
	h.stop()
	h2 := startService(t, dir, nil)
	if got := h2.svc.ActiveReadModel().Collection(); got != "connections_g1" {
		t.Fatalf("after restart: %s", got)
	}
	id, _ := h2.mustCreate("after-restart")
	h2.expectVersions(map[string]uint64{id: 1})
}

func TestReplayResumesAfterACrash(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	want := map[string]uint64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				res := h.create(validBody(fmt.Sprintf("crash-%d-%02d", w, i)))
				if res.status != http.StatusCreated {
					t.Errorf("create: %d %s", res.status, res.body)
					return
				}
				mu.Lock()
				want[res.json(t)["id"].(string)] = 1
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	js := h.jetStream()

	// The first run dies after a few batches.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen uint64
	_, err := bootstrap.Replay(ctx, js, h.svc.ReadModel, quietLogger(), bootstrap.ReplayOptions{
		Batch: 10,
		Progress: func(p bootstrap.ReplayProgress) {
			if seen = p.Done; p.Done >= 40 {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted replay: %v", err)
	}
	meta, err := h.svc.ReadModel.Active(t.Context(), eventstore.ProjectorConsumer)
	if err != nil || meta.Generation != 0 || meta.Pending != 1 {
		t.Fatalf("meta after the crash: %+v %v", meta, err)
	}
	if got := h.svc.ActiveReadModel().Collection(); got != "connections" {
		t.Fatalf("readers moved before the replay ended: %s", got)
	}
	p, err := eventstore.Progress(t.Context(), js, "readmodel-projector-g1")
	if err != nil || p.Acknowledged == 0 {
		t.Fatalf("progress of the interrupted replay: %+v %v", p, err)
	}

	// The rerun resumes: it handles only what is left.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	var first uint64
	res, err := bootstrap.Replay(ctx2, js, h.svc.ReadModel, quietLogger(), bootstrap.ReplayOptions{
		Batch: 10,
		Progress: func(p bootstrap.ReplayProgress) {
			if first == 0 {
				first = p.Done
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Generation != 1 || res.Events == 0 || res.Events >= uint64(len(want)) || first < seen {
		t.Fatalf("resumed replay %+v (first progress %d, interrupted at %d)", res, first, seen)
	}
	eventually(t, "the service reads generation 1", func() bool { return h.svc.ActiveReadModel().Collection() == "connections_g1" })
	h.expectVersions(want)
	v, err := bootstrap.Verify(ctx2, js, h.svc.ReadModel, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Differences) != 0 || v.Documents != len(want) {
		t.Fatalf("verify: %+v", v)
	}

	// A second replay builds generation 2 from generation 1.
	res, err = bootstrap.Replay(ctx2, js, h.svc.ReadModel, quietLogger(), bootstrap.ReplayOptions{})
	if err != nil || res.Generation != 2 || res.Previous != 1 || res.Resumed || res.Events != uint64(len(want)) {
		t.Fatalf("second replay %+v %v", res, err)
	}
	eventually(t, "the service reads generation 2", func() bool { return h.svc.ActiveReadModel().Collection() == "connections_g2" })
	h.expectVersions(want)
}

func listAll() readmodel.ListQuery { return readmodel.ListQuery{Limit: 1000} }
