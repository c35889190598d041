// Package bench measures Sluice against direct MariaDB and HAProxy in TCP
// mode with sysbench, in the same run on the same machine, so figures can be
// compared as ratios even on shared, noisy hardware.
package bench

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/lab"
)

var (
	topo   *lab.Topology
	binary string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run()) // no benchmark asked for: no servers to start
	}
	var err error
	if binary, err = lab.BuildSluice(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lab.RunTests(m, lab.Options{Replicas: 2}, func(t *lab.Topology) { topo = t })
}

// benchTime is how long each sysbench run lasts (SLUICE_BENCH_TIME overrides).
func benchTime() string {
	if v := os.Getenv("SLUICE_BENCH_TIME"); v != "" {
		return v
	}
	return "10"
}

// target is something sysbench connects to, and the process whose CPU counts.
type target struct {
	name string
	addr string
	pid  int // 0: no proxy process (direct)
}

// BenchmarkPointSelect runs sysbench oltp_point_select at 8 threads through
// each target and reports qps, p95 latency and the proxy's CPU per query.
func BenchmarkPointSelect(b *testing.B) {
	sb, err := exec.LookPath("sysbench")
	if err != nil {
		b.Skip("sysbench not installed")
	}
	prepare(b, sb)
	// direct-replica: what a replica answers on its own, the floor for reads
	// that readwritesplit sends to replicas.
	targets := []target{{name: "direct", addr: topo.Primary.Addr()}, {name: "direct-replica", addr: topo.Replicas[0].Addr()}}
	if hp, err := exec.LookPath("haproxy"); err == nil {
		targets = append(targets, startHAProxy(b, hp))
	}
	targets = append(targets, startSluice(b, "readconnroute", "false"), startSluice(b, "readwritesplit", "false"),
		startSluice(b, "readwritesplit", "true"))
	for _, mode := range []string{"disable", "auto"} {
		for _, tg := range targets {
			b.Run(fmt.Sprintf("ps=%s/%s", mode, tg.name), func(b *testing.B) {
				for range b.N {
					r := runSysbench(b, sb, tg, "oltp_point_select", mode, 8)
					b.ReportMetric(r.qps, "qps")
					b.ReportMetric(r.p95ms, "p95-ms")
					if tg.pid != 0 {
						b.ReportMetric(r.cpuPerQueryUS, "proxy-cpu-us/query")
					}
				}
			})
		}
	}
}

type result struct {
	qps, p95ms, cpuPerQueryUS float64
	queries                   int64
}

func sysbenchArgs(addr string) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"--db-driver=mysql", "--mysql-host=" + host, "--mysql-port=" + port,
		"--mysql-user=sbtest", "--mysql-password=sbtest", "--mysql-db=sbtest", "--tables=4", "--table-size=10000"}
}

func prepare(b *testing.B, sb string) {
	args := append([]string{"oltp_read_write"}, sysbenchArgs(topo.Primary.Addr())...)
	for _, step := range []string{"cleanup", "prepare"} {
		if out, err := exec.Command(sb, append(args, step)...).CombinedOutput(); err != nil {
			b.Fatalf("sysbench %s: %v\n%s", step, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		b.Fatal(err)
	}
}

var (
	queriesRe = regexp.MustCompile(`queries:\s+(\d+)\s+\(([\d.]+) per sec`)
	p95Re     = regexp.MustCompile(`95th percentile:\s+([\d.]+)`)
)

func runSysbench(b *testing.B, sb string, tg target, test, psMode string, threads int) result {
	args := append([]string{test}, sysbenchArgs(tg.addr)...)
	args = append(args, "--threads="+strconv.Itoa(threads), "--time="+benchTime(), "--db-ps-mode="+psMode, "run")
	cpuBefore := processCPU(tg.pid)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, sb, args...).CombinedOutput()
	if err != nil {
		b.Fatalf("sysbench %s via %s: %v\n%s", test, tg.name, err, out)
	}
	cpu := processCPU(tg.pid) - cpuBefore
	m := queriesRe.FindStringSubmatch(string(out))
	p := p95Re.FindStringSubmatch(string(out))
	if m == nil || p == nil {
		b.Fatalf("cannot read sysbench output:\n%s", out)
	}
	var r result
	r.queries, _ = strconv.ParseInt(m[1], 10, 64)
	r.qps, _ = strconv.ParseFloat(m[2], 64)
	r.p95ms, _ = strconv.ParseFloat(p[1], 64)
	if r.queries > 0 {
		r.cpuPerQueryUS = float64(cpu.Microseconds()) / float64(r.queries)
	}
	return r
}

// processCPU is a process's user plus system CPU time, from /proc.
func processCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

func startHAProxy(b *testing.B, hp string) target {
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
    default_backend primary
backend primary
    server primary %s
`, addr, topo.Primary.Addr())
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(hp, "-db", "-f", path)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitListening(b, addr)
	return target{name: "haproxy", addr: addr, pid: cmd.Process.Pid}
}

func startSluice(b *testing.B, router, genlog string) target {
	dir := b.TempDir()
	listen, admin := lab.FreeAddr(b), lab.FreeAddr(b)
	var servers strings.Builder
	for _, s := range topo.Servers() {
		fmt.Fprintf(&servers, "  - name: %s\n    address: %s\n", s.Name, s.Addr())
	}
	cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
servers:
%sservice_user: {user: monitor, password: monpass}
router: {type: %s}
genlog: {enabled: %s}
broker: {enabled: true, listen: %s, data_dir: %s}
log: {level: warn}
max_procs: 1
`, listen, admin, servers.String(), router, genlog, lab.FreeAddr(b), filepath.Join(dir, "broker"))
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitListening(b, listen)
	name := "sluice-" + router
	if genlog == "true" {
		name += "+genlog"
	}
	return target{name: name, addr: listen, pid: cmd.Process.Pid}
}

func waitListening(b *testing.B, addr string) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not start listening: %v", addr, err)
		}
		t := time.NewTimer(20 * time.Millisecond)
		<-t.C
	}
}
