package bootstrap_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/connreg/registry/internal/bootstrap"
)

// listeningSockets returns the inodes of the TCP sockets this process
// listens on, from /proc (Linux).
func listeningSockets(t *testing.T) map[string]bool {
	t.Helper()
	mine := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	out := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ... uid timeout inode
			if len(fields) > 9 && fields[3] == "0A" && mine[fields[9]] {
				out[fields[9]+" "+fields[1]] = true
			}
		}
		f.Close()
	}
	return out
}

// TestEmbeddedServersListenOnNoPort: the embedded nats-server asks for no
// credentials, so the service must keep it to itself: starting it with the
// embedded defaults opens no TCP listener, and the read model (a SQLite file)
// lives in a folder only this user may enter. `projector verify`
// still reaches the embedded stack, in its own process, once the API has
// stopped.
func TestEmbeddedServersListenOnNoPort(t *testing.T) {
	before := listeningSockets(t)
	dir := t.TempDir()
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svc, err := bootstrap.Start(ctx, testConfig(t, dir, nil), slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs.String())
	}
	after := listeningSockets(t)
	for s := range after {
		if !before[s] {
			t.Errorf("the embedded stack listens on TCP: socket %s", s)
		}
	}
	if svc.NATSURL != "" {
		t.Errorf("the embedded nats-server has a client URL: %s", svc.NATSURL)
	}
	// The embedded read model is a SQLite file: no server, no socket at all,
	// in a folder only this user may enter.
	if svc.MongoURI != "" || svc.SQLiteFile == "" {
		t.Fatalf("the embedded read model is not a private SQLite file: MONGO_URI %q, file %q", svc.MongoURI, svc.SQLiteFile)
	}
	fi, err := os.Stat(filepath.Dir(svc.SQLiteFile))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the read model's folder: %v %v, want 0700", fi.Mode(), err)
	}
	nc, err := svc.ConnectNATS()
	if err != nil {
		t.Fatalf("in-process connection: %v", err)
	}
	nc.Close()
	svc.Close()

	res, err := bootstrap.VerifyFromConfig(ctx, testConfig(t, dir, map[string]string{"HTTP_ADDR": "127.0.0.1:1"}),
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil || len(res.Differences) != 0 {
		t.Fatalf("verify against the stopped embedded stack: %+v %v", res, err)
	}
}
