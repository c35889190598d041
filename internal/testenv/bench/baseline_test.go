package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// The baseline (SLUICE_BENCH_BASELINE=REV) is bin/sluice built at another
// git revision and run beside the working tree's in the same interleaved
// run: its targets are the working tree's Sluice targets, started the same
// way with the other binary, so a change's cost shows as a ratio measured
// under the same noise.

// Target name prefixes: a Sluice target of the working tree's binary, and
// its twin with the baseline's.
const (
	sluicePrefix   = "sluice-"
	baselinePrefix = "baseline-"
)

// Baseline targets, opt-in through SLUICE_BENCH_TARGETS or added by
// SLUICE_BENCH_BASELINE.
const (
	tBaseReadConnRoute = baselinePrefix + "readconnroute"
	tBaseRWSplit       = baselinePrefix + "readwritesplit"
	tBaseRWSplitGenlog = baselinePrefix + "readwritesplit+genlog"
	tBaseRWSplitPool   = baselinePrefix + "readwritesplit+pool"
)

var baselineTargets = []string{tBaseReadConnRoute, tBaseRWSplit, tBaseRWSplitGenlog, tBaseRWSplitPool}

// sluiceBinary is a bin/sluice the benchmark runs.
type sluiceBinary struct {
	path   string // the executable
	prefix string // of its targets' names: sluicePrefix or baselinePrefix
	what   string // in messages and process names
}

// baselineTwin is the baseline twin of a working-tree Sluice target, or "".
func baselineTwin(name string) string {
	if rest, ok := strings.CutPrefix(name, sluicePrefix); ok {
		return baselinePrefix + rest
	}
	return ""
}

// sluiceKind is how a Sluice target runs: its router, Genlog on or off,
// and pooling (pool.mode multiplex) on or off.
type sluiceKind struct {
	router       string
	genlog, pool bool
}

// name is the target's name for the binary of prefix: the router, then
// "+pool" and "+genlog" when on.
func (k sluiceKind) name(prefix string) string {
	n := prefix + k.router
	if k.pool {
		n += "+pool"
	}
	if k.genlog {
		n += "+genlog"
	}
	return n
}

// sluiceTarget splits a Sluice target's name: which binary, and how it
// runs; ok is false for targets that are not Sluice.
func sluiceTarget(name string) (baseline bool, kind sluiceKind, ok bool) {
	rest, ok := strings.CutPrefix(name, sluicePrefix)
	if !ok {
		if rest, baseline = strings.CutPrefix(name, baselinePrefix); !baseline {
			return false, sluiceKind{}, false
		}
	}
	rest, kind.genlog = strings.CutSuffix(rest, "+genlog")
	kind.router, kind.pool = strings.CutSuffix(rest, "+pool")
	return baseline, kind, true
}

// withBaseline checks the targets against SLUICE_BENCH_BASELINE: baseline
// targets need a baseline; a baseline with no baseline target listed adds
// the twin of every Sluice target, right after it.
func withBaseline(targets []string, rev string) ([]string, error) {
	listed := slices.ContainsFunc(targets, func(t string) bool { return strings.HasPrefix(t, baselinePrefix) })
	switch {
	case rev == "" && listed:
		return targets, fmt.Errorf("SLUICE_BENCH_TARGETS lists baseline targets but SLUICE_BENCH_BASELINE names no revision to build them from")
	case rev == "" || listed:
		return targets, nil
	}
	var out []string
	for _, t := range targets {
		out = append(out, t)
		if twin := baselineTwin(t); twin != "" {
			out = append(out, twin)
		}
	}
	if len(out) == len(targets) {
		return targets, fmt.Errorf("SLUICE_BENCH_BASELINE=%s: SLUICE_BENCH_TARGETS has no Sluice target to run it beside (add %s or %s)", rev, tRWSplit, tBaseRWSplit)
	}
	return out, nil
}

// buildBaseline builds bin/sluice at rev (git archive of it into a
// temporary directory, built as the working tree is) for one top-level
// benchmark and removes it when that benchmark ends. It returns git
// describe of the revision.
func buildBaseline(b *testing.B, rev string) (sluiceBinary, string) {
	bin, describe, err := buildAt(repoRoot(), rev)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)) })
	return sluiceBinary{path: bin, prefix: baselinePrefix, what: "baseline sluice " + describe}, describe
}

func buildAt(repo, rev string) (bin, describe string, err error) {
	commit, err := git(repo, "rev-parse", "--verify", "--quiet", rev+"^{commit}")
	if err != nil {
		return "", "", fmt.Errorf("SLUICE_BENCH_BASELINE=%s: no such revision in %s", rev, repo)
	}
	if describe, err = git(repo, "describe", "--tags", "--always", commit); err != nil {
		return "", "", fmt.Errorf("SLUICE_BENCH_BASELINE=%s: %w", rev, err)
	}
	tmp, err := os.MkdirTemp("", "sluice-baseline-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	archive, src := filepath.Join(tmp, "src.tar"), filepath.Join(tmp, "src")
	if _, err := git(repo, "archive", "--format=tar", "-o", archive, commit); err != nil {
		return "", "", fmt.Errorf("SLUICE_BENCH_BASELINE=%s (%s): %w", rev, describe, err)
	}
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", "", err
	}
	if out, err := exec.Command("tar", "-xf", archive, "-C", src).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("SLUICE_BENCH_BASELINE=%s (%s): tar: %v\n%s", rev, describe, err, out)
	}
	if bin, err = lab.BuildSluiceFrom(src); err != nil {
		return "", "", fmt.Errorf("SLUICE_BENCH_BASELINE=%s (%s) does not build: %w", rev, describe, err)
	}
	return bin, describe, nil
}

// git runs git in repo and returns its trimmed output, or an error with
// what it printed on stderr.
func git(repo string, args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// checkConfig has bin load the config the benchmark wrote (serve
// --check-config), so a baseline that does not know one of its keys says
// so instead of dying at start. A binary without --check-config is let
// through: starting it will tell.
func checkConfig(bin sluiceBinary, path string) error {
	out, err := exec.Command(bin.path, "serve", "--config", path, "--check-config").CombinedOutput()
	if err == nil || strings.Contains(string(out), "unknown flag") {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(msg, "unknown key") {
		msg += " (the bench writes a key this binary does not know: the config format changed since)"
	}
	return fmt.Errorf("%s does not load the config the bench writes: %s", bin.what, msg)
}
