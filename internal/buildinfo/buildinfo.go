// Package buildinfo tells which build is running: the version stamped at
// build time, the commit and the Go version.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is the release version, set at build time with
// -ldflags "-X github.com/connreg/registry/internal/buildinfo.Version=v1.2.3";
// "dev" otherwise.
var Version = "dev"

// Info describes the running binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
}

// Read returns the build's description. The commit comes from the VCS
// information the Go toolchain embeds (empty when built outside a checkout,
// with "+dirty" when the tree had uncommitted changes).
func Read() Info {
	info := Info{Version: Version, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && info.Commit != "" {
			info.Commit += "+dirty"
		}
	}
	return info
}

// String is the one-line form `--version` prints.
func (i Info) String() string {
	s := i.Version
	if i.Commit != "" {
		s += " (" + i.Commit + ")"
	}
	return s + " " + i.GoVersion
}
