package bench

import (
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// benchConfig is the matrix to run, from SLUICE_BENCH_* (BENCHMARKS.md
// documents them).
type benchConfig struct {
	seconds int      // SLUICE_BENCH_TIME: length of one sysbench run
	rounds  int      // SLUICE_BENCH_ROUNDS: runs of each target per cell, merged
	tests   []string // SLUICE_BENCH_TESTS
	psModes []string // SLUICE_BENCH_PS_MODES
	threads []int    // SLUICE_BENCH_THREADS
	// SLUICE_BENCH_MANY_THREADS: more thread counts, run only by the
	// manyClientTargets among targets
	manyThreads []int
	targets     []string // SLUICE_BENCH_TARGETS, with the baseline's twins (withBaseline)
	baseline    string   // SLUICE_BENCH_BASELINE: git revision of the baseline Sluice, "" for none
	sessions    int      // SLUICE_BENCH_SESSIONS: idle sessions of BenchmarkIdleSessions
	// SLUICE_BENCH_POOL_SESSIONS: the same with pooling on
	poolSessions int
}

var knownTests = []string{"oltp_point_select", "oltp_read_only", "oltp_read_write"}

func configFromEnv() (benchConfig, error) {
	c := benchConfig{seconds: 5, rounds: 1, sessions: 1000, poolSessions: 10000, tests: knownTests, psModes: []string{"disable", "auto"},
		threads: []int{8, 64}, manyThreads: []int{256, 1024}, targets: allTargets}
	var errs []string
	positive := func(name string, dst *int) {
		v := os.Getenv(name)
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Sprintf("%s=%q: want a positive integer", name, v))
			return
		}
		*dst = n
	}
	list := func(name string, dst *[]string, allowed []string) {
		v := os.Getenv(name)
		if v == "" {
			return
		}
		var out []string
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if !slices.Contains(allowed, s) {
				errs = append(errs, fmt.Sprintf("%s: %q is not one of %s", name, s, strings.Join(allowed, ", ")))
				continue
			}
			out = append(out, s)
		}
		if len(out) == 0 {
			errs = append(errs, fmt.Sprintf("%s=%q names nothing", name, v))
			return
		}
		*dst = out
	}
	positive("SLUICE_BENCH_TIME", &c.seconds)
	positive("SLUICE_BENCH_ROUNDS", &c.rounds)
	positive("SLUICE_BENCH_SESSIONS", &c.sessions)
	positive("SLUICE_BENCH_POOL_SESSIONS", &c.poolSessions)
	list("SLUICE_BENCH_TESTS", &c.tests, knownTests)
	list("SLUICE_BENCH_PS_MODES", &c.psModes, []string{"disable", "auto"})
	list("SLUICE_BENCH_TARGETS", &c.targets, slices.Concat(allTargets, []string{tDirectReplica, tGoRelay}, baselineTargets))
	c.baseline = strings.TrimSpace(os.Getenv("SLUICE_BENCH_BASELINE"))
	if strings.HasPrefix(c.baseline, "-") {
		errs = append(errs, fmt.Sprintf("SLUICE_BENCH_BASELINE=%q: want a git revision", c.baseline))
	} else if t, err := withBaseline(c.targets, c.baseline); err != nil {
		errs = append(errs, err.Error())
	} else {
		c.targets = t
	}
	threads := func(name string, dst *[]int, none bool) {
		v := os.Getenv(name)
		if v == "" {
			return
		}
		*dst = nil
		if none && v == "none" {
			return
		}
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 || n > 1024 {
				errs = append(errs, fmt.Sprintf("%s: %q: want 1 to 1024", name, s))
				continue
			}
			*dst = append(*dst, n)
		}
		if len(*dst) == 0 {
			errs = append(errs, name+" names nothing")
		}
	}
	threads("SLUICE_BENCH_THREADS", &c.threads, false)
	threads("SLUICE_BENCH_MANY_THREADS", &c.manyThreads, true)
	if len(errs) > 0 {
		return c, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return c, nil
}

// cellThreads is every thread count of a test and ps mode: threads, then
// those of manyThreads not among them when a target of the run takes them.
func (c benchConfig) cellThreads() []int {
	out := slices.Clone(c.threads)
	if !slices.ContainsFunc(c.targets, func(t string) bool { return slices.Contains(manyClientTargets, t) }) {
		return out
	}
	for _, n := range c.manyThreads {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// runs reports whether target runs in the cells of threads clients.
func (c benchConfig) runs(target string, threads int) bool {
	return slices.Contains(c.threads, threads) || slices.Contains(manyClientTargets, target)
}

// histogram is sysbench's latency histogram (--histogram=on): count per
// bucket, keyed by the bucket's value in milliseconds as printed.
type histogram map[float64]int64

// percentile is what sysbench itself computes from the same buckets
// (sb_histogram_get_pct): the first bucket at which the running count
// reaches round(total × p / 100).
func (h histogram) percentile(p float64) float64 {
	var total int64
	values := make([]float64, 0, len(h))
	for v, n := range h {
		total += n
		values = append(values, v)
	}
	want := int64(math.Floor(float64(total)*p/100 + 0.5))
	if want == 0 {
		return 0
	}
	slices.Sort(values)
	var cum int64
	for _, v := range values {
		cum += h[v]
		if cum >= want {
			return v
		}
	}
	return values[len(values)-1]
}

// runResult is one target's figures in one cell: one sysbench run, or the
// merge of several rounds.
type runResult struct {
	target string
	proxy  bool  // a proxy process whose CPU was measured
	err    error // the run failed: no figures

	queries int64   // sysbench "queries:" total
	events  int64   // sysbench events (transactions)
	errors  int64   // sysbench "ignored errors" (deadlocks and the like)
	seconds float64 // sysbench "total time"
	hist    histogram
	cpu     time.Duration // proxy user+system CPU during the run
	// The rest of the machine during the run, to show where a query's CPU
	// goes: every mariadbd, sysbench itself, and the CPU time nobody used.
	serverCPU, clientCPU, idle, machine time.Duration
	onPrimary                           int64 // statements the primary was sent (Questions)
	onServers                           int64 // statements all servers were sent

	sysbenchP99 float64 // sysbench's own p99 line, to check the histogram parse
}

func (r *runResult) qps() float64 {
	if r.seconds == 0 {
		return 0
	}
	return float64(r.queries) / r.seconds
}

func (r *runResult) percentile(p float64) float64 { return r.hist.percentile(p) }

func (r *runResult) cpuPerQueryUS() float64 { return r.perQueryUS(r.cpu) }

// perQueryUS is d spread over the run's queries, in microseconds.
func (r *runResult) perQueryUS(d time.Duration) float64 {
	if r.queries == 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / 1e3 / float64(r.queries)
}

// idleShare is the share of the machine's CPU time no process used.
func (r *runResult) idleShare() float64 {
	if r.machine == 0 {
		return 0
	}
	return float64(r.idle) / float64(r.machine)
}

func (r *runResult) primaryShare() float64 {
	if r.onServers == 0 {
		return 0
	}
	return float64(r.onPrimary) / float64(r.onServers)
}

func (r *runResult) merge(o *runResult) {
	r.queries += o.queries
	r.events += o.events
	r.errors += o.errors
	r.seconds += o.seconds
	r.cpu += o.cpu
	r.serverCPU += o.serverCPU
	r.clientCPU += o.clientCPU
	r.idle += o.idle
	r.machine += o.machine
	r.onPrimary += o.onPrimary
	r.onServers += o.onServers
	if r.hist == nil {
		r.hist = histogram{}
	}
	for v, n := range o.hist {
		r.hist[v] += n
	}
	r.sysbenchP99 = o.sysbenchP99
}

var (
	histLineRe  = regexp.MustCompile(`(?m)^\s*([0-9.]+) \|\**\s+(\d+)\s*$`)
	queriesRe   = regexp.MustCompile(`(?m)^\s*queries:\s+(\d+)\s+\(`)
	eventsRe    = regexp.MustCompile(`(?m)^\s*total number of events:\s+(\d+)`)
	ignoredRe   = regexp.MustCompile(`(?m)^\s*ignored errors:\s+(\d+)`)
	totalTimeRe = regexp.MustCompile(`(?m)^\s*total time:\s+([0-9.]+)s`)
	p99Re       = regexp.MustCompile(`(?m)^\s*99th percentile:\s+([0-9.]+)`)
)

// parseSysbench reads sysbench 1.0's report of a run made with
// --histogram=on --percentile=99.
func parseSysbench(out string) (*runResult, error) {
	r := &runResult{hist: histogram{}}
	ints := []struct {
		re  *regexp.Regexp
		dst *int64
	}{{queriesRe, &r.queries}, {eventsRe, &r.events}, {ignoredRe, &r.errors}}
	for _, f := range ints {
		m := f.re.FindStringSubmatch(out)
		if m == nil {
			return nil, fmt.Errorf("no %q in sysbench output:\n%s", f.re, lab.LastLines(out, 30))
		}
		*f.dst, _ = strconv.ParseInt(m[1], 10, 64)
	}
	floats := []struct {
		re  *regexp.Regexp
		dst *float64
	}{{totalTimeRe, &r.seconds}, {p99Re, &r.sysbenchP99}}
	for _, f := range floats {
		m := f.re.FindStringSubmatch(out)
		if m == nil {
			return nil, fmt.Errorf("no %q in sysbench output:\n%s", f.re, lab.LastLines(out, 30))
		}
		*f.dst, _ = strconv.ParseFloat(m[1], 64)
	}
	var inHist int64
	for _, m := range histLineRe.FindAllStringSubmatch(out, -1) {
		v, err1 := strconv.ParseFloat(m[1], 64)
		n, err2 := strconv.ParseInt(m[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		r.hist[v] += n
		inHist += n
	}
	if r.events > 0 && inHist == 0 {
		return nil, fmt.Errorf("no latency histogram in sysbench output (--histogram=on):\n%s", lab.LastLines(out, 30))
	}
	return r, nil
}
