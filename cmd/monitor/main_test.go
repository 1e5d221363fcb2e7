package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHelpNeverActs: --help and --version print and exit 0 without starting
// the monitor; bad arguments exit 2, also without touching anything.
func TestHelpNeverActs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DATA_DIR", filepath.Join(dir, "data"))
	t.Setenv("NATS_URL", "nats://127.0.0.1:1")
	t.Setenv("MONITOR_INTERVAL", "1m")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"--version"}, 0},
		{[]string{"extra"}, 2},
		{[]string{"--no-such-flag"}, 2},
	} {
		if got := run(tc.args); got != tc.code {
			t.Errorf("monitor %v: exit %d, want %d", tc.args, got, tc.code)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
			t.Fatalf("monitor %v touched DATA_DIR (stat: %v)", tc.args, err)
		}
	}
}
