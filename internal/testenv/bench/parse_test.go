package bench

import (
	"fmt"
	"math"
	"os"
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
		os.Getenv("SLUICE_BENCH_THREADS") == "" && os.Getenv("SLUICE_BENCH_PS_MODES") == "" {
		if err != nil {
			t.Fatal(err)
		}
		if n := len(c.tests) * len(c.psModes) * len(c.threads) * len(c.targets); n != 72 {
			t.Errorf("default matrix has %d runs, want 72 (3 tests, 2 ps modes, 2 thread counts, 6 targets)", n)
		}
	}
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
