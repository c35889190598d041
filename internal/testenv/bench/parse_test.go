package bench

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The histogram parse gives the percentile sysbench prints itself (both
// outputs are real sysbench 1.0.20 runs with --histogram=on --percentile=99).
func TestParseSysbench(t *testing.T) {
	for _, name := range []string{"oltp_point_select", "oltp_read_write"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + name + ".txt")
			if err != nil {
				t.Fatal(err)
			}
			r, err := parseSysbench(string(data))
			if err != nil {
				t.Fatal(err)
			}
			if r.queries == 0 || r.events == 0 || r.seconds == 0 {
				t.Fatalf("queries %d events %d seconds %v", r.queries, r.events, r.seconds)
			}
			var inHist int64
			for _, n := range r.hist {
				inHist += n
			}
			if inHist != r.events {
				t.Errorf("histogram holds %d events, sysbench counted %d", inHist, r.events)
			}
			if got := r.percentile(99); math.Abs(got-r.sysbenchP99) > 0.006 {
				t.Errorf("p99 from histogram %.3f, sysbench says %.2f", got, r.sysbenchP99)
			}
			if p95, p99 := r.percentile(95), r.percentile(99); p95 <= 0 || p95 > p99 {
				t.Errorf("p95 %.3f, p99 %.3f", p95, p99)
			}
		})
	}
	if _, err := parseSysbench("FATAL: error 2013: Lost connection to server during query\n"); err == nil {
		t.Error("parsed a failed run")
	}
}

func TestPercentileAndMerge(t *testing.T) {
	a := &runResult{queries: 100, seconds: 1, hist: histogram{1: 90, 2: 5, 3: 5}, cpu: time.Millisecond,
		serverCPU: 5 * time.Millisecond, clientCPU: time.Millisecond, idle: 100 * time.Millisecond, machine: time.Second}
	b := &runResult{queries: 300, seconds: 1, hist: histogram{1: 90, 10: 10}, cpu: 3 * time.Millisecond,
		serverCPU: 15 * time.Millisecond, clientCPU: 7 * time.Millisecond, idle: 300 * time.Millisecond, machine: time.Second}
	if got := a.percentile(95); got != 2 {
		t.Errorf("p95 = %v, want 2", got)
	}
	if got := a.percentile(99); got != 3 {
		t.Errorf("p99 = %v, want 3", got)
	}
	a.merge(b)
	if a.qps() != 200 || a.cpuPerQueryUS() != 10 {
		t.Errorf("merged qps %v, cpu %v µs/query", a.qps(), a.cpuPerQueryUS())
	}
	if s, c, idle := a.perQueryUS(a.serverCPU), a.perQueryUS(a.clientCPU), a.idleShare(); s != 50 || c != 20 || idle != 0.2 {
		t.Errorf("merged servers %v, sysbench %v µs/query, idle %v; want 50, 20, 0.2", s, c, idle)
	}
	if p95, p99 := a.percentile(95), a.percentile(99); p95 != 3 || p99 != 10 {
		t.Errorf("merged p95 = %v, p99 = %v; want 3, 10", p95, p99)
	}
	if got := (histogram{}).percentile(99); got != 0 {
		t.Errorf("empty p99 = %v", got)
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 50 ticks.
	line := "4242 (sl (uice) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 3 0 100 0 0"
	got, err := parseStatCPU(line)
	if err != nil || got != 3*time.Second {
		t.Fatalf("got %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("parsed garbage")
	}
	if cpu, err := processCPU(os.Getpid()); err != nil || cpu < 0 {
		t.Errorf("own CPU: %v, %v", cpu, err)
	}
}

func TestParseMachineCPU(t *testing.T) {
	// user nice system idle iowait irq softirq steal: steal counts nowhere.
	stat := "cpu  1000 0 500 300 100 0 100 9999 0 0\ncpu0 500 0 250 150 50 0 50 0 0 0\n"
	idle, total, err := parseMachineCPU(stat)
	if err != nil || idle != 4*time.Second || total != 20*time.Second {
		t.Fatalf("got idle %v, total %v, %v; want 4s, 20s", idle, total, err)
	}
	if _, _, err := parseMachineCPU("intr 1 2 3\n"); err == nil {
		t.Error("parsed a file without the cpu line")
	}
	if idle, total, err := machineCPU(); err != nil || total <= 0 || idle > total {
		t.Errorf("this machine: idle %v, total %v, %v", idle, total, err)
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# Benchmarks\n\nHand-written.\n"
	doc = replaceSection(doc, "a", "first A")
	doc = replaceSection(doc, "b", "first B")
	doc = replaceSection(doc, "a", "second A\n")
	if strings.Count(doc, beginMarker("a")) != 1 || strings.Count(doc, endMarker("b")) != 1 {
		t.Fatalf("markers duplicated:\n%s", doc)
	}
	if !strings.Contains(doc, "second A") || strings.Contains(doc, "first A") || !strings.Contains(doc, "first B") {
		t.Fatalf("wrong content:\n%s", doc)
	}
	if !strings.HasPrefix(doc, "# Benchmarks\n\nHand-written.\n") {
		t.Fatalf("hand-written part changed:\n%s", doc)
	}
	if strings.Index(doc, beginMarker("a")) > strings.Index(doc, beginMarker("b")) {
		t.Fatalf("section a moved after b:\n%s", doc)
	}
}

func TestConfigFromEnv(t *testing.T) {
	c, err := configFromEnv()
	if os.Getenv("SLUICE_BENCH_TESTS") == "" && os.Getenv("SLUICE_BENCH_TARGETS") == "" &&
		os.Getenv("SLUICE_BENCH_THREADS") == "" && os.Getenv("SLUICE_BENCH_PS_MODES") == "" && os.Getenv("SLUICE_BENCH_BASELINE") == "" {
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range c.tests {
			for range c.psModes {
				for _, threads := range c.cellThreads() {
					for _, tg := range c.targets {
						if c.runs(tg, threads) {
							n++
						}
					}
				}
			}
		}
		// 3 tests × 2 ps modes × (2 thread counts × 7 targets + 2 many-client counts × 2 targets)
		if n != 108 {
			t.Errorf("default matrix has %d runs, want 108", n)
		}
	}
	t.Setenv("SLUICE_BENCH_BASELINE", "")
	t.Setenv("SLUICE_BENCH_TESTS", "oltp_point_select, oltp_read_only")
	t.Setenv("SLUICE_BENCH_THREADS", "8")
	t.Setenv("SLUICE_BENCH_TIME", "2")
	t.Setenv("SLUICE_BENCH_TARGETS", "haproxy,direct-replica")
	c, err = configFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.tests, c.threads, c.seconds, c.targets) != "[oltp_point_select oltp_read_only] [8] 2 [haproxy direct-replica]" {
		t.Errorf("got %v %v %v %v", c.tests, c.threads, c.seconds, c.targets)
	}
	t.Setenv("SLUICE_BENCH_TESTS", "oltp_insert")
	t.Setenv("SLUICE_BENCH_THREADS", "0")
	if _, err := configFromEnv(); err == nil || !strings.Contains(err.Error(), "oltp_insert") || !strings.Contains(err.Error(), "THREADS") {
		t.Errorf("bad settings accepted: %v", err)
	}
}

func TestCPUDescription(t *testing.T) {
	info := "processor\t: 0\nmodel name\t: AMD EPYC  7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := cpuDescription(info); got != "AMD EPYC 7B13 × 2" {
		t.Errorf("got %q", got)
	}
}

// SLUICE_BENCH_BASELINE adds the baseline twin of every Sluice target right
// after it, unless SLUICE_BENCH_TARGETS lists baseline targets itself;
// baseline targets without a baseline, and a baseline with nothing to run
// it beside, are refused.
func TestConfigBaseline(t *testing.T) {
	t.Setenv("SLUICE_BENCH_TESTS", "")
	t.Setenv("SLUICE_BENCH_THREADS", "")
	t.Setenv("SLUICE_BENCH_PS_MODES", "")
	for _, tc := range []struct {
		baseline, targets string
		want              string // targets, or the error's substrings after "error:"
	}{
		{"035b6bb", "", "[direct haproxy haproxy-replicas sluice-readconnroute baseline-readconnroute " +
			"sluice-readwritesplit baseline-readwritesplit sluice-readwritesplit+genlog baseline-readwritesplit+genlog " +
			"sluice-readwritesplit+pool baseline-readwritesplit+pool]"},
		{" main~3 ", "haproxy,sluice-readwritesplit", "[haproxy sluice-readwritesplit baseline-readwritesplit]"},
		{"main~3", "sluice-readwritesplit,baseline-readwritesplit,haproxy", "[sluice-readwritesplit baseline-readwritesplit haproxy]"},
		{"main~3", "baseline-readwritesplit+genlog", "[baseline-readwritesplit+genlog]"},
		{"", "sluice-readwritesplit,baseline-readwritesplit", "error:SLUICE_BENCH_BASELINE"},
		{"main~3", "haproxy,direct", "error:main~3"},
		{"--output=/tmp/x", "", "error:SLUICE_BENCH_BASELINE"},
		{"main", "baseline-readwritesplit+audit", "error:baseline-readwritesplit+audit"},
	} {
		t.Setenv("SLUICE_BENCH_BASELINE", tc.baseline)
		t.Setenv("SLUICE_BENCH_TARGETS", tc.targets)
		c, err := configFromEnv()
		if want, ok := strings.CutPrefix(tc.want, "error:"); ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("BASELINE=%q TARGETS=%q: got %v, %v; want an error naming %s", tc.baseline, tc.targets, c.targets, err, want)
			}
			continue
		}
		if err != nil || fmt.Sprint(c.targets) != tc.want || c.baseline != strings.TrimSpace(tc.baseline) {
			t.Errorf("BASELINE=%q TARGETS=%q: got %v (baseline %q), %v; want %s", tc.baseline, tc.targets, c.targets, c.baseline, err, tc.want)
		}
	}
}

// The name a Sluice target is asked for by is the name its runs are
// reported under (startSluice builds it from the parts), so a working-tree
// run finds its baseline twin in the cell.
func TestSluiceTarget(t *testing.T) {
	for _, name := range append(slices.Clone(allTargets), baselineTargets...) {
		baseline, kind, ok := sluiceTarget(name)
		if !ok {
			if strings.HasPrefix(name, sluicePrefix) || strings.HasPrefix(name, baselinePrefix) {
				t.Errorf("%s: not taken for a Sluice target", name)
			}
			continue
		}
		prefix := sluicePrefix
		if baseline {
			prefix = baselinePrefix
		}
		if kind.router != "readwritesplit" && kind.router != "readconnroute" {
			t.Errorf("%s: router %q", name, kind.router)
		}
		if got := kind.name(prefix); got != name {
			t.Errorf("%s comes back as %s", name, got)
		}
		if !baseline && !slices.Contains(baselineTargets, baselineTwin(name)) {
			t.Errorf("%s: twin %q is not a baseline target", name, baselineTwin(name))
		}
	}
}

// A revision that does not exist is named in the error, before anything is
// built.
func TestBuildAtUnknownRevision(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	if _, err := git(repoRoot(), "rev-parse", "HEAD"); err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	_, _, err := buildAt(repoRoot(), "no-such-rev-0123")
	if err == nil || !strings.Contains(err.Error(), "SLUICE_BENCH_BASELINE=no-such-rev-0123: no such revision") {
		t.Errorf("got %v", err)
	}
}

// checkConfig passes what the binary loads, names the binary and the key it
// refuses, and lets through a binary too old for --check-config.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	fake := func(name, script string) sluiceBinary {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
		return sluiceBinary{path: path, prefix: baselinePrefix, what: "baseline sluice v0.9"}
	}
	good := fake("good", `echo "$2: ok"`)
	refuses := fake("refuses", `echo "$2:9: unknown key \"max_procs\"; see configs/sluice.yaml for the keys that exist" >&2; exit 2`)
	tooOld := fake("old", `echo 'Error: unknown flag: --check-config' >&2; exit 1`)
	if err := checkConfig(good, "sluice.yaml"); err != nil {
		t.Errorf("good config: %v", err)
	}
	err := checkConfig(refuses, "sluice.yaml")
	if err == nil || !strings.Contains(err.Error(), "baseline sluice v0.9") || !strings.Contains(err.Error(), `"max_procs"`) ||
		!strings.Contains(err.Error(), "does not know") {
		t.Errorf("refused config: %v", err)
	}
	if err := checkConfig(tooOld, "sluice.yaml"); err != nil {
		t.Errorf("binary without --check-config: %v", err)
	}
}

// With a baseline, the tables get a "× baseline" column that compares each
// working-tree Sluice run with its twin in the same cell, the settings line
// names the baseline, and each cell gets a line for readwritesplit with the
// 3% check on point selects; without one, none of it.
func TestRenderBaseline(t *testing.T) {
	run := func(target string, queries int64, cpu time.Duration) *runResult {
		return &runResult{target: target, proxy: target != tDirect, queries: queries, events: queries, seconds: 10,
			hist: histogram{0.5: queries}, cpu: cpu, machine: time.Second}
	}
	cells := []*cell{
		{cellKey: cellKey{test: "oltp_point_select", mode: "disable", threads: 8}, runs: []*runResult{
			run(tHAProxy, 60000, 600*time.Millisecond),
			run(tRWSplit, 50000, 1500*time.Millisecond),     // 30 µs/query, 5000 qps
			run(tBaseRWSplit, 40000, 1000*time.Millisecond), // 25 µs/query, 4000 qps
			{target: tReadConnRoute, proxy: true, err: fmt.Errorf("sysbench: exit status 1\nmore")},
			run(tBaseReadConnRoute, 40000, 800*time.Millisecond),
		}},
		{cellKey: cellKey{test: "oltp_point_select", mode: "disable", threads: 64}, runs: []*runResult{
			run(tRWSplit, 50000, 1000*time.Millisecond),     // 20 µs/query
			run(tBaseRWSplit, 50000, 1000*time.Millisecond), // 20 µs/query
		}},
	}
	cfg := benchConfig{seconds: 10, rounds: 2, tests: []string{"oltp_point_select"}, psModes: []string{"disable"},
		threads: []int{8, 64}, baseline: "main~3"}
	rep := &sysbenchReport{cfg: cfg, machine: machine{sluice: "abc1234-dirty"}, baseline: "035b6bb", cells: cells}
	doc := rep.render()

	settings := lineWith(doc, "Settings:")
	if !strings.Contains(settings, "035b6bb") || !strings.Contains(settings, "SLUICE_BENCH_BASELINE=main~3") {
		t.Errorf("settings line does not name the baseline: %s", settings)
	}
	header := lineWith(doc, "| ps mode |")
	col := slices.Index(strings.Split(header, " | "), "× baseline: qps, proxy CPU/query")
	if col < 0 {
		t.Fatalf("no baseline column: %s", header)
	}
	cellOf := func(target string, threads int) string {
		for _, line := range strings.Split(doc, "\n") {
			f := strings.Split(line, " | ")
			if len(f) > col && f[2] == target && f[1] == fmt.Sprint(threads) {
				return f[col]
			}
		}
		t.Fatalf("no row for %s at %d threads:\n%s", target, threads, doc)
		return ""
	}
	if got := cellOf(tRWSplit, 8); got != "1.25, 1.20" {
		t.Errorf("readwritesplit against its baseline: %q, want qps × 1.25, CPU × 1.20", got)
	}
	if got := cellOf(tBaseRWSplit, 8); got != "–" {
		t.Errorf("the baseline's own row: %q", got)
	}
	if got := cellOf(tHAProxy, 8); got != "–" {
		t.Errorf("haproxy's row: %q", got)
	}
	// Every row of the table, a failed one too, has the header's columns.
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "| disable |") && strings.Count(line, " | ") != strings.Count(header, " | ") {
			t.Errorf("row has %d columns, header %d: %s", strings.Count(line, " | ")+1, strings.Count(header, " | ")+1, line)
		}
	}
	if l := lineWith(doc, "- oltp_point_select, ps=disable, 8 threads:"); !strings.Contains(l, "CPU 30.0 vs 25.0 µs/query, × 1.200") ||
		!strings.Contains(l, "**missed**") || !strings.Contains(l, "qps 5000 vs 4000, × 1.25") {
		t.Errorf("8 threads line: %s", l)
	}
	if l := lineWith(doc, "- oltp_point_select, ps=disable, 64 threads:"); !strings.Contains(l, "× 1.000") || !strings.Contains(l, "3% above: met") {
		t.Errorf("64 threads line: %s", l)
	}
	if !strings.Contains(doc, "working tree (abc1234-dirty) against the baseline (035b6bb)") {
		t.Errorf("no heading for the baseline lines:\n%s", doc)
	}

	rep.baseline, rep.cfg.baseline = "", ""
	doc = rep.render()
	if strings.Contains(doc, "× baseline") || strings.Contains(doc, "against the baseline") || strings.Contains(lineWith(doc, "Settings:"), "baseline") {
		t.Errorf("baseline shown without one:\n%s", doc)
	}
}

func lineWith(doc, substr string) string {
	for _, line := range strings.Split(doc, "\n") {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}

// Issue #20's lines: pooling against HAProxy to the primary at 256 clients
// (met or missed) and at 1,024 (shown, no target), against HAProxy over the
// replicas at 64; the many-client counts are named in the settings line.
func TestRenderPoolTargets(t *testing.T) {
	run := func(target string, queries int64) *runResult {
		return &runResult{target: target, proxy: true, queries: queries, events: queries, seconds: 10, hist: histogram{0.5: queries}}
	}
	cells := []*cell{
		{cellKey: cellKey{test: "oltp_point_select", mode: "auto", threads: 64}, runs: []*runResult{
			run(tHAProxy, 90000), run(tHAProxyReplicas, 50000), run(tRWSplitPool, 55000)}},
		{cellKey: cellKey{test: "oltp_point_select", mode: "auto", threads: 256}, runs: []*runResult{
			run(tHAProxy, 60000), run(tRWSplitPool, 48000)}},
		{cellKey: cellKey{test: "oltp_point_select", mode: "auto", threads: 1024}, runs: []*runResult{
			run(tHAProxy, 30000), run(tRWSplitPool, 45000)}},
	}
	cfg := benchConfig{seconds: 10, rounds: 1, tests: []string{"oltp_point_select"}, psModes: []string{"auto"},
		threads: []int{64}, manyThreads: []int{256, 1024}, targets: []string{tHAProxy, tHAProxyReplicas, tRWSplitPool}}
	doc := (&sysbenchReport{cfg: cfg, cells: cells}).render()
	for _, want := range []string{
		"readwritesplit+pool against HAProxy over the same replicas (oltp_point_select, 64 clients, ps=auto): 5500 vs 5000 qps, × 1.10: met",
		"readwritesplit+pool against HAProxy to the primary (oltp_point_select, 256 clients, ps=auto): 4800 vs 6000 qps, × 0.80: **missed**",
		"readwritesplit+pool against HAProxy to the primary (oltp_point_select, 1024 clients, ps=auto): 4500 vs 3000 qps, × 1.50: no target",
		"threads 64 (and 256, 1024 for haproxy, sluice-readwritesplit+pool, baseline-readwritesplit+pool only)",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("no %q in:\n%s", want, doc)
		}
	}
	if doc := (&sysbenchReport{cfg: cfg, cells: cells[:0]}).render(); strings.Contains(doc, "Issue #20") {
		t.Errorf("issue #20's targets without a pooling run:\n%s", doc)
	}
}
