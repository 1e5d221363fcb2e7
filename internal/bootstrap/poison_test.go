package bootstrap_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/connreg/registry/events"
	"github.com/connreg/registry/internal/bootstrap"
)

// poisonCreated is a connection.created.v1 whose metadata the read model
// cannot store. The API refuses such metadata now, but an event written
// before that rule, or by another writer, is already in the stream.
func poisonCreated(id, name, key string) events.Event {
	return events.Event{
		Metadata: events.Metadata{EventID: uuid.NewString(), AggregateID: id, AggregateVersion: 1,
			OccurredAt: time.Now().UTC(), Actor: "poison-test"},
		Payload: &events.ConnectionCreatedV1{Organization: "default", ConfigName: name, ProductName: "reports",
			Type: "POSTGRESQL", Host: "db.example.com", Port: 5432, DatabaseName: "d", UserName: "u", Schema: "public",
			Password: events.SealedSecret{Scheme: "devseal", KeyName: "k", Ciphertext: "devseal:v1:abc"},
			Metadata: map[string]string{key: "v"}},
	}
}

// TestPoisonEventInTheStreamIsParkedAndTheProjectorGoesOn puts events the
// store refuses ('$where', a dotted key, a NUL in a key) straight into the
// stream, bypassing the API, between writes of other clients. The projector
// must park each with the store's reason and a log line, write the rest of
// its batch, and keep projecting: every later create appears in lists. After
// a restart the parked events are still there and the start says so.
//
// The refusal is MongoDB's (the embedded SQLite store can store any key), so
// the service runs on MONGO_URI, a FerretDB of the test's own.
func TestPoisonEventInTheStreamIsParkedAndTheProjectorGoesOn(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"MONGO_URI": externalMongo(t).URI()}
	h := startService(t, dir, env)
	if res := h.create(validBody("before-poison")); res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := h.jetStream()
	poison := map[uint64]string{} // stream sequence -> connection id
	for i, key := range []string{"$where", "a.b", "a\x00b"} {
		id := uuid.NewString()
		data, err := events.Encode(poisonCreated(id, fmt.Sprintf("poison-%d", i), key))
		if err != nil {
			t.Fatal(err)
		}
		ack, err := js.Publish(ctx, events.EventSubject(id), data)
		if err != nil {
			t.Fatal(err)
		}
		poison[ack.Sequence] = id
	}
	var want []string
	for i := range 5 {
		name := fmt.Sprintf("after-poison-%d", i)
		if res := h.create(validBody(name)); res.status != http.StatusCreated {
			t.Fatalf("%d %s", res.status, res.body)
		}
		want = append(want, name)
	}
	eventually(t, "creates after the poison events in lists", func() bool {
		got := names(h.list("limit=100&configName=after-poison", reports))
		return len(got) == len(want)
	})
	if got := names(h.list("limit=100&configName=poison", reports)); len(got) != 0 {
		t.Errorf("poison connections listed: %v", got)
	}
	checkParked := func(h *harness) {
		t.Helper()
		parked, err := h.svc.ActiveReadModel().Parked(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, p := range parked {
			seqs = append(seqs, p.Sequence)
			if _, ok := poison[p.Sequence]; !ok {
				t.Errorf("parked an event that is not poison: %d %s", p.Sequence, p.Reason)
			}
			if !strings.Contains(p.Reason, "refused the document of "+poison[p.Sequence]) {
				t.Errorf("parked %d without the store's reason: %q", p.Sequence, p.Reason)
			}
		}
		for seq := range poison {
			if !slices.Contains(seqs, seq) {
				t.Errorf("poison event %d not parked (parked: %v)", seq, seqs)
			}
		}
	}
	checkParked(h)
	for seq := range poison {
		if line := fmt.Sprintf(`"sequence":%d`, seq); !strings.Contains(h.logs.String(), "projector parked an event") ||
			!strings.Contains(h.logs.String(), line) {
			t.Errorf("no log line parks event %d", seq)
		}
	}
	if !strings.Contains(h.logs.String(), `invalid key: \"$where\"`) {
		t.Errorf("the log does not give the store's reason for $where")
	}

	h.stop()
	h2 := startService(t, dir, env)
	if res := h2.create(validBody("after-restart")); res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	eventually(t, "a create after the restart in lists", func() bool {
		return len(names(h2.list("configName=after-restart", reports))) == 1
	})
	checkParked(h2)
	if !strings.Contains(h2.logs.String(), "the read model has parked events") {
		t.Errorf("the restarted service does not say it has parked events")
	}
	// The poisoned connection is not gone: the stream still answers for it.
	for _, id := range poison {
		if res := h2.do(http.MethodGet, "/v1/management/connections/"+id, nil, nil); res.status != http.StatusOK {
			t.Errorf("GET %s after restart: %d %s", id, res.status, res.body)
		}
		break
	}

	// A replay meets the same events: it parks them too and completes.
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	res, err := bootstrap.Replay(rctx, h2.jetStream(), h2.svc.ReadModel, quietLogger(), bootstrap.ReplayOptions{Batch: 4})
	if err != nil {
		t.Fatalf("replay over poison events: %v", err)
	}
	if res.Documents != len(want)+2 {
		t.Errorf("replay wrote %d documents, want %d (every create but the poison ones)", res.Documents, len(want)+2)
	}
	checkParked(h2)
}

// TestMetadataTheReadModelCannotStoreIsRefused: through the whole service,
// a create or a change with such metadata is a 400 naming the key, and
// nothing reaches the stream.
func TestMetadataTheReadModelCannotStoreIsRefused(t *testing.T) {
	h := startService(t, t.TempDir(), nil)
	id, etag := h.mustCreate("clean-db")
	for _, key := range []string{"$where", "$", "a.b", ".", "a..b", "a\x00b"} {
		body := validBody("poison-db")
		body["metadata"] = map[string]any{key: "v"}
		path := "metadata." + strings.ReplaceAll(key, "\x00", `\x00`)
		for what, res := range map[string]response{
			"create": h.create(body),
			"patch":  h.patch(id, map[string]any{"metadata": map[string]any{key: "v"}}, map[string]string{"If-Match": etag}),
		} {
			if res.status != http.StatusBadRequest {
				t.Fatalf("%s with metadata key %q: %d %s", what, key, res.status, res.body)
			}
			fields, _ := res.json(t)["fields"].(map[string]any)
			if _, ok := fields[path]; !ok {
				t.Errorf("%s with metadata key %q: fields %v do not name %q", what, key, fields, path)
			}
		}
	}
	if msgs := h.streamMessages(events.EventSubject(id)); len(msgs) != 1 {
		t.Errorf("the refused changes reached the stream: %d events", len(msgs))
	}
	if msgs := h.streamMessages(events.EventSubjectPrefix); len(msgs) != 1 {
		t.Errorf("the refused creates reached the stream: %d events", len(msgs))
	}
}
