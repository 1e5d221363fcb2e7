package bootstrap_test

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// openSQLite opens the service's embedded read model from the outside, as
// another process would.
func openSQLite(t *testing.T, h *harness) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+h.svc.SQLiteFile+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func createMany(t *testing.T, h *harness, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if res := h.create(validBody(fmt.Sprintf("%s-%03d", prefix, i))); res.status != http.StatusCreated {
					t.Errorf("create %d: %d %s", i, res.status, res.body)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// TestSlowStoreDoesNotLivelockTheProjector makes every insert into the read
// model cost a tenth of STORE_TIMEOUT for real (a trigger that burns CPU in
// SQLite), so a batch of more than ten creates always times out. Retried at
// the same size, as the projector once did, it would time out forever; split,
// the projector reaches the end.
func TestSlowStoreDoesNotLivelockTheProjector(t *testing.T) {
	h := startService(t, t.TempDir(), map[string]string{"STORE_TIMEOUT": "1s"})
	db := openSQLite(t, h)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, `CREATE TABLE burn (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `WITH RECURSIVE c(x) AS (VALUES(1) UNION ALL SELECT x+1 FROM c WHERE x < 3000) INSERT INTO burn SELECT x FROM c`); err != nil {
		t.Fatal(err)
	}
	// Calibrate: a self-join of k rows costs about k² steps; aim at 100 ms
	// per insert, adjusting twice.
	burn := func(k int) string {
		return fmt.Sprintf(`SELECT sum(a.x * b.x) FROM (SELECT x FROM burn LIMIT %d) a, (SELECT x FROM burn LIMIT %d) b`, k, k)
	}
	k, took := 400, time.Duration(0)
	for range 3 {
		start := time.Now()
		if _, err := db.ExecContext(ctx, burn(k)); err != nil {
			t.Fatal(err)
		}
		took = time.Since(start)
		k = max(10, min(3000, int(float64(k)*math.Sqrt(0.1/took.Seconds()))))
	}
	if _, err := db.ExecContext(ctx, `CREATE TRIGGER slow_insert AFTER INSERT ON connections BEGIN `+burn(k)+`; END`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := db.ExecContext(ctx, burn(k)); err != nil {
		t.Fatal(err)
	}
	t.Logf("one insert now costs about %v more (k=%d)", time.Since(start).Round(time.Millisecond), k)

	const n = 60
	createMany(t, h, "slow", n)
	deadline := time.Now().Add(3 * time.Minute)
	for h.liveDocuments() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the projector did not get through: %d of %d projected; logs:\n%s", h.liveDocuments(), n, tail(h.logs.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"next":"split in halves"`) {
		t.Fatalf("no batch timed out: the test did not make the store slow enough to mean anything; logs:\n%s", tail(logs, 3000))
	}
	if !strings.Contains(logs, `"msg":"projector recovered"`) || !strings.Contains(logs, `"lagMs"`) {
		t.Errorf("the projector did not report its state while failing and when it recovered; logs:\n%s", tail(logs, 3000))
	}
}

// TestLockedStoreDelaysTheProjectorOnly holds the read model's write lock
// from another connection for longer than STORE_TIMEOUT: the API keeps
// accepting writes, the projector fails, backs off, and catches up once the
// lock is released.
func TestLockedStoreDelaysTheProjectorOnly(t *testing.T) {
	h := startService(t, t.TempDir(), map[string]string{"STORE_TIMEOUT": "500ms"})
	db := openSQLite(t, h)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	const n = 40
	createMany(t, h, "locked", n)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(h.logs.String(), `"msg":"projector batch failed"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the projector never failed on a locked store; logs:\n%s", tail(h.logs.String(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := h.liveDocuments(); got >= n {
		t.Fatalf("%d documents projected while the store was locked", got)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "projection after the lock", func() bool { return h.liveDocuments() == n })
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
