package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestHelpNeverActs runs the command lines that must only print: none may
// start the service, open DATA_DIR or re-seal anything. VAULT_ADDR points at
// a closed port, so a reseal that went ahead would fail with 1, not 0/2.
func TestHelpNeverActs(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DATA_DIR", filepath.Join(dir, "data"))
	t.Setenv("HTTP_ADDR", "127.0.0.1:1")
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"--version"}, 0},
		{[]string{"reseal", "--help"}, 0},
		{[]string{"reseal", "-h"}, 0},
		{[]string{"reseal", "--version"}, 0},
		{[]string{"reseal"}, 2},                       // neither --yes nor --dry-run
		{[]string{"reseal", "--yes", "--dry-run"}, 2}, // both
		{[]string{"--no-such-flag"}, 2},
		{[]string{"serve"}, 2}, // unknown argument
	} {
		if got := run(tc.args); got != tc.code {
			t.Errorf("api %v: exit %d, want %d", tc.args, got, tc.code)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
			t.Fatalf("api %v touched DATA_DIR (stat: %v)", tc.args, err)
		}
	}
}
