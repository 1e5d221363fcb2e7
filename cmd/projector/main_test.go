package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHelpNeverActs: --help and --version print and exit 0 without running
// the projector, a replay or a verify; bad arguments exit 2, also without
// touching anything.
func TestHelpNeverActs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DATA_DIR", filepath.Join(dir, "data"))
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	t.Setenv("MONGO_URI", "mongodb://127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"--version"}, 0},
		{[]string{"replay", "--help"}, 0},
		{[]string{"verify", "-h"}, 0},
		{[]string{"--help", "replay"}, 0},
		{[]string{"replay", "extra"}, 2},
		{[]string{"rebuild"}, 2},
		{[]string{"--no-such-flag"}, 2},
	} {
		if got := run(tc.args); got != tc.code {
			t.Errorf("projector %v: exit %d, want %d", tc.args, got, tc.code)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
			t.Fatalf("projector %v touched DATA_DIR (stat: %v)", tc.args, err)
		}
	}
}
