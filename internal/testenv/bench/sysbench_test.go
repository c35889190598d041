// Package bench measures Sluice against direct MariaDB and HAProxy in TCP
// mode with sysbench, in the same run on the same machine, so figures can be
// compared as ratios even on shared, noisy hardware, and writes the results
// to BENCHMARKS.md at the top of the repository (`make bench`).
//
// Without a -bench flag the package starts nothing, so `go test ./...` stays
// fast; the parsing and report code is unit tested then.
package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

var (
	topo   *lab.Topology
	binary sluiceBinary // bin/sluice built for the running benchmark (buildSluice)
)

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run()) // no benchmark asked for: no servers to start
	}
	// At 1,024 clients sysbench prepares about 40 statements per client
	// through HAProxy, each on the primary: more than MariaDB's default
	// max_prepared_stmt_count of 16,382 allows.
	opts := lab.Options{Replicas: 2, ExtraArgs: []string{"--max-prepared-stmt-count=1048576"}}
	lab.RunTests(m, opts, func(t *lab.Topology) { topo = t })
}

// buildSluice builds bin/sluice from the working tree for one top-level
// benchmark and removes it when that benchmark ends (after the processes
// it started, whose cleanups run first).
func buildSluice(b *testing.B) {
	bin, err := lab.BuildSluice()
	if err != nil {
		b.Fatal(err)
	}
	binary = sluiceBinary{path: bin, prefix: sluicePrefix, what: "sluice"}
	b.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)) })
}

// The sysbench data set: every test reads and writes the same tables.
const (
	sbTables    = 4
	sbTableSize = 10000
)

// Target names, in the default order of a cell.
const (
	tDirect        = "direct"
	tDirectReplica = "direct-replica" // opt-in: what one replica answers alone
	// opt-in: a bare Go TCP relay to the primary (internal/testenv/bench/gorelay),
	// the floor for any proxy in Go as HAProxy is for any proxy.
	tGoRelay = "go-relay"
	tHAProxy = "haproxy"
	// HAProxy spreading connections over the replicas (leastconn): the
	// same servers doing the same work as readwritesplit's reads, so the
	// floor to compare a read/write split with on the read-only tests.
	tHAProxyReplicas = "haproxy-replicas"
	tReadConnRoute   = "sluice-readconnroute"
	tRWSplit         = "sluice-readwritesplit"
	tRWSplitGenlog   = "sluice-readwritesplit+genlog"
	// readwritesplit with pooling (pool.mode multiplex, poolSize server
	// connections per server): the one Sluice target of the many-client
	// cells (manyClientTargets).
	tRWSplitPool = "sluice-readwritesplit+pool"
)

var allTargets = []string{tDirect, tHAProxy, tHAProxyReplicas, tReadConnRoute, tRWSplit, tRWSplitGenlog, tRWSplitPool}

// manyClientTargets are the targets of the cells at SLUICE_BENCH_MANY_THREADS
// clients (issue 20): pooling (and its baseline twin, with a baseline)
// against HAProxy to the primary, which needs a server connection per
// client. The other targets would only make a long run longer.
var manyClientTargets = []string{tHAProxy, tRWSplitPool, tBaseRWSplitPool}

// poolSize is pool.max_server_connections of the pooling target: Sluice's
// default, under MariaDB's default max_connections of 151.
const poolSize = 100

// poolWaitTimeout is pool.wait_timeout of the pooling target. At 1,024
// clients of oltp_read_write the primary is saturated and clients queue:
// through HAProxy in InnoDB's lock waits (p99 9 to 11 s here), through
// Sluice for one of the 100 connections, each held for a transaction (p99
// about 5 s). Within the default of 10 s, but a busier machine would turn
// the queue into errors and the cell would measure nothing.
const poolWaitTimeout = "60s"

// target is something sysbench connects to, and the process whose CPU counts.
type target struct {
	name string
	addr string
	pid  int // 0: no proxy process (direct)
}

// BenchmarkSysbench runs the sysbench matrix (tests × ps modes × thread
// counts) through every target. Within a cell the targets run one after the
// other (rotated from cell to cell and round to round), so the machine's
// noise hits them alike and ratios within a cell are meaningful. Each cell
// reports one sub-benchmark per target, and BENCHMARKS.md is rewritten after
// every cell.
func BenchmarkSysbench(b *testing.B) {
	sb, err := exec.LookPath("sysbench")
	if err != nil {
		b.Skip("sysbench not installed")
	}
	cfg, err := configFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	// sysbench holds a file per client, HAProxy two.
	lab.NeedFiles(b, uint64(2*slices.Max(cfg.cellThreads())+1024))
	buildSluice(b)
	rep := &sysbenchReport{cfg: cfg}
	var baseline sluiceBinary
	if cfg.baseline != "" {
		baseline, rep.baseline = buildBaseline(b, cfg.baseline)
	}
	prepare(b, sb)
	rep.machine = describeMachine()

	var targets []target
	for _, name := range cfg.targets {
		switch name {
		case tDirect:
			targets = append(targets, target{name: name, addr: topo.Primary.Addr()})
		case tDirectReplica:
			targets = append(targets, target{name: name, addr: topo.Replicas[0].Addr()})
		case tGoRelay:
			targets = append(targets, startGoRelay(b))
		case tHAProxy, tHAProxyReplicas:
			hp, err := exec.LookPath("haproxy")
			if err != nil {
				b.Logf("haproxy not installed: no %s column", name)
				continue
			}
			servers := []*lab.Server{topo.Primary}
			if name == tHAProxyReplicas {
				servers = topo.Replicas
			}
			targets = append(targets, startHAProxy(b, hp, name, servers))
		default:
			// The working tree's Sluice targets and their baseline twins,
			// started alike but for the binary.
			if isBaseline, kind, ok := sluiceTarget(name); ok {
				bin := binary
				if isBaseline {
					bin = baseline
				}
				targets = append(targets, startSluice(b, bin, kind))
			}
		}
	}

	rep.began = time.Now()
	cellIndex := 0
	for _, test := range cfg.tests {
		for _, mode := range cfg.psModes {
			for _, threads := range cfg.cellThreads() {
				k := cellKey{test: test, mode: mode, threads: threads}
				rotate := cellIndex
				cellIndex++
				b.Run(fmt.Sprintf("%s/ps=%s/threads=%d", test, mode, threads), func(b *testing.B) {
					c := runCell(b, sb, cfg, k, targets, rotate)
					rep.cells = append(rep.cells, c)
					rep.elapsed = time.Since(rep.began)
					for _, line := range baselineLines([]*cell{c}) {
						// Also when SLUICE_BENCH_OUT=none: the figure a baseline run is for.
						fmt.Fprintf(os.Stderr, "bench: readwritesplit, working tree against baseline %s: %s\n", rep.baseline, strings.TrimPrefix(line, "- "))
					}
					if err := writeSection(sectionSysbench, rep.render()); err != nil {
						b.Error(err)
					}
					for _, r := range c.runs {
						b.Run(r.target, func(b *testing.B) {
							if r.err != nil {
								b.Skipf("failed: %v", r.err)
							}
							b.ReportMetric(0, "ns/op")
							b.ReportMetric(r.qps(), "qps")
							b.ReportMetric(r.percentile(95), "p95-ms")
							b.ReportMetric(r.percentile(99), "p99-ms")
							if r.proxy {
								b.ReportMetric(r.cpuPerQueryUS(), "proxy-cpu-us/query")
							}
						})
					}
				})
			}
		}
	}
}

// cellKey is one (test, ps mode, threads) combination.
type cellKey struct {
	test    string
	mode    string
	threads int
}

type cell struct {
	cellKey
	runs []*runResult // in target order
}

func (c *cell) get(name string) *runResult {
	for _, r := range c.runs {
		if r.target == name && r.err == nil && r.queries > 0 {
			return r
		}
	}
	return nil
}

// runCell runs every target rounds times in a rotated order and merges the
// rounds of each target.
func runCell(b *testing.B, sb string, cfg benchConfig, k cellKey, targets []target, rotate int) *cell {
	c := &cell{cellKey: k}
	byName := map[string]*runResult{}
	var usable []target
	for _, tg := range targets {
		// A replica refuses writes (read_only): direct-replica only reads.
		if (tg.name == tDirectReplica || tg.name == tHAProxyReplicas) && k.test == "oltp_read_write" {
			continue
		}
		if !cfg.runs(tg.name, k.threads) {
			continue
		}
		usable = append(usable, tg)
		r := &runResult{target: tg.name, proxy: tg.pid != 0, hist: histogram{}}
		byName[tg.name] = r
		c.runs = append(c.runs, r)
	}
	for round := range cfg.rounds {
		for i := range usable {
			tg := usable[(i+rotate+round)%len(usable)]
			r := byName[tg.name]
			if r.err != nil {
				continue
			}
			one, err := runSysbench(sb, cfg, tg, k)
			if err != nil {
				r.err = err
				b.Errorf("%s ps=%s threads=%d via %s: %v", k.test, k.mode, k.threads, tg.name, err)
				continue
			}
			r.merge(one)
			fmt.Fprintf(os.Stderr, "bench: %-17s ps=%-7s threads=%-3d %-30s %9.0f qps  p95 %7.2f ms  p99 %7.2f ms  cpu %6.1f µs/query (servers %5.1f, sysbench %5.1f, idle %2.0f%%)  primary %3.0f%%\n",
				k.test, k.mode, k.threads, tg.name, one.qps(), one.percentile(95), one.percentile(99), one.cpuPerQueryUS(),
				one.perQueryUS(one.serverCPU), one.perQueryUS(one.clientCPU), 100*one.idleShare(), 100*one.primaryShare())
		}
	}
	if k.test == "oltp_read_write" {
		// Let the replicas apply what the cell wrote before the next cell.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
			b.Error(err)
		}
	}
	return c
}

func sysbenchArgs(addr string) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"--db-driver=mysql", "--mysql-host=" + host, "--mysql-port=" + port,
		"--mysql-user=" + lab.SbtestUser, "--mysql-password=" + lab.SbtestPassword, "--mysql-db=sbtest",
		"--tables=" + strconv.Itoa(sbTables), "--table-size=" + strconv.Itoa(sbTableSize)}
}

// prepare creates the sysbench tables once, on the primary, and waits for
// the replicas to have them.
func prepare(b *testing.B, sb string) {
	args := append([]string{"oltp_read_write"}, sysbenchArgs(topo.Primary.Addr())...)
	for _, step := range []string{"cleanup", "prepare"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		out, err := exec.CommandContext(ctx, sb, append(args, step)...).CombinedOutput()
		cancel()
		if err != nil {
			b.Fatalf("sysbench %s: %v\n%s", step, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		b.Fatal(err)
	}
}

// runSysbench runs one sysbench test through tg and measures the proxy's
// CPU time and where the queries went.
func runSysbench(sb string, cfg benchConfig, tg target, k cellKey) (*runResult, error) {
	args := append([]string{k.test}, sysbenchArgs(tg.addr)...)
	args = append(args, "--threads="+strconv.Itoa(k.threads), "--time="+strconv.Itoa(cfg.seconds), "--events=0",
		"--db-ps-mode="+k.mode, "--percentile=99", "--histogram=on", "run")
	questionsBefore, err := questions()
	if err != nil {
		return nil, err
	}
	cpuBefore, err := processCPU(tg.pid)
	if err != nil {
		return nil, err
	}
	serversBefore, err := serversCPU()
	if err != nil {
		return nil, err
	}
	idleBefore, machineBefore, err := machineCPU()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.seconds)*time.Second+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sb, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("sysbench: %v\n%s", err, lab.LastLines(string(out), 20))
	}
	idleAfter, machineAfter, err := machineCPU()
	if err != nil {
		return nil, err
	}
	serversAfter, err := serversCPU()
	if err != nil {
		return nil, err
	}
	cpuAfter, err := settledCPU(tg.pid)
	if err != nil {
		return nil, err
	}
	questionsAfter, err := questions()
	if err != nil {
		return nil, err
	}
	r, err := parseSysbench(string(out))
	if err != nil {
		return nil, err
	}
	r.target, r.proxy = tg.name, tg.pid != 0
	r.cpu = cpuAfter - cpuBefore
	r.serverCPU = serversAfter - serversBefore
	r.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	r.idle, r.machine = idleAfter-idleBefore, machineAfter-machineBefore
	for i := range questionsAfter {
		d := questionsAfter[i] - questionsBefore[i]
		if i == 0 {
			r.onPrimary += d
		}
		r.onServers += d
	}
	return r, nil
}

// questions is each server's Questions counter, primary first: how many
// statements it was sent.
func questions() ([]int64, error) {
	var out []int64
	for _, s := range topo.Servers() {
		n, err := s.GlobalStatus("Questions")
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// processCPU is a process's user plus system CPU time, from /proc (0 for
// pid 0, the direct target).
func processCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(data))
}

// serversCPU is the CPU time of every mariadbd of the topology.
func serversCPU() (time.Duration, error) {
	var sum time.Duration
	for _, s := range topo.Servers() {
		pid := s.Pid()
		if pid == 0 {
			return 0, fmt.Errorf("%s is not running", s.Name)
		}
		cpu, err := processCPU(pid)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", s.Name, err)
		}
		sum += cpu
	}
	return sum, nil
}

// machineCPU is the idle and the total CPU time of all CPUs since boot.
func machineCPU() (idle, total time.Duration, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseMachineCPU(string(data))
}

// parseMachineCPU reads /proc/stat's "cpu" line: idle plus iowait is idle
// time; steal (time the hypervisor gave to other machines) is left out of
// both, since nobody here could use it.
func parseMachineCPU(s string) (idle, total time.Duration, err error) {
	line, _, _ := strings.Cut(s, "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var ticks [8]int64 // user nice system idle iowait irq softirq steal
	for i := range ticks {
		if ticks[i], err = strconv.ParseInt(fields[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("unexpected /proc/stat line %q: %w", line, err)
		}
	}
	var sum int64
	for _, t := range ticks[:7] {
		sum += t
	}
	return time.Duration(ticks[3]+ticks[4]) * time.Second / clkTck, time.Duration(sum) * time.Second / clkTck, nil
}

// clkTck is USER_HZ, the unit of /proc's CPU times on Linux.
const clkTck = 100

// parseStatCPU reads utime and stime (fields 14 and 15) of /proc/PID/stat.
func parseStatCPU(s string) (time.Duration, error) {
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, fmt.Errorf("unexpected /proc stat line %q", s)
	}
	fields := strings.Fields(s[i+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat line %q", s)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clkTck, nil
}

// settledCPU waits (up to 2s) until the process has stopped using CPU for
// 100ms, so work a run queued (audit records lingering before a flush)
// counts for that run, then returns its CPU time.
func settledCPU(pid int) (time.Duration, error) {
	last, err := processCPU(pid)
	if err != nil || pid == 0 {
		return last, err
	}
	deadline := time.Now().Add(2 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		<-tick.C
		now, err := processCPU(pid)
		if err != nil {
			return 0, err
		}
		if now == last {
			return now, nil
		}
		last = now
	}
	return last, nil
}

// startHAProxy runs HAProxy in TCP mode in front of servers (leastconn
// among them when there are several).
func startHAProxy(b *testing.B, hp, name string, servers []*lab.Server) target {
	dir := b.TempDir()
	addr := lab.FreeAddr(b)
	cfg := fmt.Sprintf(`global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend mysql
    bind %s
    default_backend servers
backend servers
    balance leastconn
`, addr)
	for _, s := range servers {
		cfg += fmt.Sprintf("    server %s %s\n", s.Name, s.Addr())
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	p := lab.StartProcess(b, "haproxy", lab.Listening(addr), hp, "-db", "-f", path)
	return target{name: name, addr: addr, pid: p.Pid()}
}

// startGoRelay builds and runs internal/testenv/bench/gorelay in front of the
// primary.
func startGoRelay(b *testing.B) target {
	bin := filepath.Join(b.TempDir(), "gorelay")
	build := exec.Command("go", "build", "-o", bin, "./gorelay")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build gorelay: %v\n%s", err, out)
	}
	addr := lab.FreeAddr(b)
	p := lab.StartProcess(b, "gorelay", lab.Listening(addr), bin, "-listen", addr, "-backend", topo.Primary.Addr())
	return target{name: tGoRelay, addr: addr, pid: p.Pid()}
}

// startSluice runs bin (max_procs from SLUICE_BENCH_MAX_PROCS, the bundled
// broker) until the benchmark ends, and waits until its monitor sees the
// primary and every replica. With Genlog the trail is signed, as in
// production (genlog.signing_key, a fresh Ed25519 key; checkpoints every
// checkpoint_interval, default 1s), unless bin is a baseline older than
// signed checkpoints, which then runs unsigned. With pooling, sessions
// share poolSize connections per server (pool.mode multiplex).
func startSluice(b *testing.B, bin sluiceBinary, kind sluiceKind) target {
	dir := b.TempDir()
	listen, admin := lab.FreeAddr(b), lab.FreeAddr(b)
	genlog := kind.genlog
	genlogYAML := fmt.Sprintf("{enabled: %t}", genlog)
	if genlog {
		genlogYAML = fmt.Sprintf("{enabled: true, signing_key: %s}", writeSigningKey(b, dir))
	}
	cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
servers:
%sservice_user: {user: %s, password: %s}
router: {type: %s}
genlog: %s
broker: {enabled: true, listen: %s, data_dir: %s}
log: {level: warn}
max_procs: %s
`, listen, admin, lab.ServersYAML(topo.Servers(), nil), lab.MonitorUser, lab.MonitorPassword, kind.router, genlogYAML,
		lab.FreeAddr(b), filepath.Join(dir, "broker"), benchMaxProcs())
	if kind.pool {
		// Only then: a baseline from before the pool section loads the rest.
		cfg += fmt.Sprintf("pool: {mode: multiplex, max_server_connections: %d, wait_timeout: %s}\n", poolSize, poolWaitTimeout)
	}
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	err := checkConfig(bin, path)
	if err != nil && genlog && bin.prefix == baselinePrefix && strings.Contains(err.Error(), "signing_key") {
		// A baseline from before signed checkpoints: Genlog unsigned.
		fmt.Fprintf(os.Stderr, "bench: %s does not know genlog.signing_key; its Genlog runs unsigned\n", bin.what)
		cfg = strings.Replace(cfg, "genlog: "+genlogYAML, "genlog: {enabled: true}", 1)
		if err = os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			b.Fatal(err)
		}
		err = checkConfig(bin, path)
	}
	if err != nil {
		b.Fatal(err)
	}
	p := lab.StartProcess(b, bin.what, lab.Listening(listen), bin.path, "serve", "--config", path)
	lab.WaitTopology(b, admin, len(topo.Replicas))
	return target{name: kind.name(bin.prefix), addr: listen, pid: p.Pid()}
}

// writeSigningKey writes a new Ed25519 private key (PKCS#8 PEM, as
// genlog.signing_key reads it) into dir and returns its path.
func writeSigningKey(b *testing.B, dir string) string {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "genlog-signing.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchMaxProcs is Sluice's max_procs in the benchmark (SLUICE_BENCH_MAX_PROCS,
// default 0: Sluice's own default, one thread per CPU, as HAProxy runs with
// its default of one thread per CPU).
func benchMaxProcs() string {
	if v := os.Getenv("SLUICE_BENCH_MAX_PROCS"); v != "" {
		return v
	}
	return "0"
}
