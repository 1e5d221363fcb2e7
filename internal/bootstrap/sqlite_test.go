package bootstrap_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/connreg/registry/internal/bootstrap"
	"github.com/connreg/registry/internal/sqlitestore"
)

// TestProjectorCommandsShareTheEmbeddedReadModel: `projector verify` and
// `projector replay` without MONGO_URI open the running API's SQLite file
// (same DATA_DIR, the API's NATS_URL), and the API follows the generation
// replay activates.
func TestProjectorCommandsShareTheEmbeddedReadModel(t *testing.T) {
	n := externalNATS(t)
	dir := t.TempDir()
	h := startService(t, dir, map[string]string{"NATS_URL": n.URL()})
	if h.svc.SQLiteFile != filepath.Join(dir, bootstrap.SQLiteDir, sqlitestore.FileName) {
		t.Fatalf("the embedded read model is %q", h.svc.SQLiteFile)
	}
	for _, name := range []string{"shared-a", "shared-b", "shared-c"} {
		if res := h.create(validBody(name)); res.status != http.StatusCreated {
			t.Fatalf("%d %s", res.status, res.body)
		}
	}
	eventually(t, "projection", func() bool { return h.liveDocuments() == 3 })

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cfg := testConfig(t, dir, map[string]string{"NATS_URL": n.URL()})
	v, err := bootstrap.VerifyFromConfig(ctx, cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	if v.Documents != 3 || len(v.Differences) != 0 {
		t.Fatalf("verify: %d documents, differences %v", v.Documents, v.Differences)
	}
	res, err := bootstrap.ReplayFromConfig(ctx, cfg, quietLogger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Generation != 1 || res.Collection != "connections_g1" || res.Documents != 3 {
		t.Fatalf("replay: %+v", res)
	}
	eventually(t, "the API reads generation 1", func() bool { return h.svc.ActiveReadModel().Collection() == "connections_g1" })
	if res := h.create(validBody("shared-d")); res.status != http.StatusCreated {
		t.Fatalf("%d %s", res.status, res.body)
	}
	eventually(t, "projection into generation 1", func() bool { return h.liveDocuments() == 4 })
	if v, err := bootstrap.VerifyFromConfig(ctx, cfg, quietLogger()); err != nil || v.Generation != 1 || len(v.Differences) != 0 {
		t.Fatalf("verify after the replay: %+v %v", v, err)
	}
}

// TestADeletedReadModelIsRebuilt: the embedded read model is disposable:
// delete its file while the service is stopped, and the next start projects
// the whole stream again.
func TestADeletedReadModelIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	h := startService(t, dir, nil)
	for _, name := range []string{"kept-a", "kept-b"} {
		if res := h.create(validBody(name)); res.status != http.StatusCreated {
			t.Fatalf("%d %s", res.status, res.body)
		}
	}
	eventually(t, "projection", func() bool { return h.liveDocuments() == 2 })
	h.stop()
	if err := os.RemoveAll(filepath.Join(dir, bootstrap.SQLiteDir)); err != nil {
		t.Fatal(err)
	}
	h2 := startService(t, dir, nil)
	eventually(t, "the rebuilt read model", func() bool { return h2.liveDocuments() == 2 })
}
