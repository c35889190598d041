// Package buildinfo says what this binary is: its version, the commit it
// was built from and the Go that built it, for `sluice version`, the
// admin API and the sluice_build_info metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is set by `make build` from `git describe` (-ldflags "-X
// github.com/sluice-proxy/sluice/internal/buildinfo.Version=..."); a plain
// `go build` leaves it empty and Read falls back to the module's build
// information.
var Version string

// Info is what this binary is.
type Info struct {
	// Version is `git describe`'s name for the commit (make build), the
	// module version (go install ...@v1.2.3), or "devel".
	Version string
	// Commit is the full commit id, "" when the build did not record it
	// (outside a git checkout); Modified says the tree had changes.
	Commit   string
	Modified bool
	// GoVersion is the Go that built the binary.
	GoVersion string
}

// Read returns this binary's Info.
func Read() Info {
	info := Info{Version: Version, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
	}
	if info.Version == "" {
		info.Version = "devel"
		if info.Commit != "" {
			info.Version += "-" + short(info.Commit)
		}
	}
	return info
}

// String is the one line `sluice version` prints:
// "sluice v0.4.0-3-gf134398 (commit f134398d..., go1.26.8)".
func (i Info) String() string {
	var b strings.Builder
	b.WriteString("sluice " + i.Version + " (")
	if i.Commit != "" {
		b.WriteString("commit " + i.Commit)
		if i.Modified {
			b.WriteString(" with local changes")
		}
		b.WriteString(", ")
	}
	b.WriteString(i.GoVersion + ")")
	return b.String()
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}
