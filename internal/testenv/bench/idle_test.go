package bench

import (
	"bytes"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// idleResult is what SLUICE_BENCH_SESSIONS idle sessions cost one Sluice.
type idleResult struct {
	name                            string
	sessions                        int
	rssStart, rssLogin, rssRead     int64 // VmRSS in bytes: fresh, after login, after one read each
	primaryBackends, replicaBackend int64 // backend connections the sessions opened (Threads_connected)
	loginTime                       time.Duration
}

type idleReport struct {
	machine machine
	results []idleResult
}

// BenchmarkIdleSessions opens SLUICE_BENCH_SESSIONS (1,000) authenticated
// client sessions through a fresh Sluice (readwritesplit, Genlog off and
// on), holds them idle, and reads the process's resident memory (VmRSS)
// before and after; then each session runs one read (which opens a replica
// connection too) and the memory is read again.
func BenchmarkIdleSessions(b *testing.B) {
	cfg, err := configFromEnv()
	if err != nil {
		b.Fatal(err)
	}
	buildSluice(b)
	rep := &idleReport{machine: describeMachine()}
	for _, genlog := range []bool{false, true} {
		name := "readwritesplit"
		if genlog {
			name += "+genlog"
		}
		b.Run(name, func(b *testing.B) {
			r := measureIdle(b, name, genlog, cfg.sessions)
			rep.results = append(rep.results, r)
			if err := writeSection(sectionIdle, rep.render()); err != nil {
				b.Error(err)
			}
			fmt.Fprintf(os.Stderr, "bench: %d idle sessions through sluice-%s: RSS %.1f MB -> %.1f MB after login (%.1f KB/session), %.1f MB after one read each\n",
				r.sessions, name, mb(r.rssStart), mb(r.rssLogin), kbPer(r.rssLogin-r.rssStart, r.sessions), mb(r.rssRead))
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(mb(r.rssLogin-r.rssStart), "MB-for-sessions")
			b.ReportMetric(kbPer(r.rssLogin-r.rssStart, r.sessions), "KB/session")
			b.ReportMetric(mb(r.rssLogin), "MB-rss-total")
			b.ReportMetric(kbPer(r.rssRead-r.rssStart, r.sessions), "KB/session-after-read")
		})
	}
}

func mb(n int64) float64             { return float64(n) / (1 << 20) }
func kbPer(n int64, per int) float64 { return float64(n) / 1024 / float64(per) }

func measureIdle(b *testing.B, name string, genlog bool, n int) idleResult {
	tg := startSluice(b, binary, "readwritesplit", genlog)
	r := idleResult{name: name, sessions: n}
	var err error
	if r.rssStart, err = settledRSS(tg.pid); err != nil {
		b.Fatal(err)
	}
	before, err := threadsConnected()
	if err != nil {
		b.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	conns, err := openSessions(ctx, tg.addr, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		b.Fatalf("%d of %d sessions open: %v", len(conns), n, err)
	}
	r.loginTime = time.Since(began)
	if r.rssLogin, err = settledRSS(tg.pid); err != nil {
		b.Fatal(err)
	}
	afterLogin, err := threadsConnected()
	if err != nil {
		b.Fatal(err)
	}
	r.primaryBackends = afterLogin[0] - before[0]

	if err := readOnce(ctx, conns); err != nil {
		b.Fatal(err)
	}
	if r.rssRead, err = settledRSS(tg.pid); err != nil {
		b.Fatal(err)
	}
	afterRead, err := threadsConnected()
	if err != nil {
		b.Fatal(err)
	}
	for i := 1; i < len(afterRead); i++ {
		r.replicaBackend += afterRead[i] - before[i]
	}
	return r
}

// openSessions logs n clients in through addr (16 at a time), each its own
// connection with the go-sql-driver, and returns them open and idle.
func openSessions(ctx context.Context, addr string, n int) ([]driver.Conn, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = lab.SbtestUser, lab.SbtestPassword, "tcp", addr, "sbtest"
	cfg.Timeout = 10 * time.Second
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	var (
		mu    sync.Mutex
		conns = make([]driver.Conn, 0, n)
		errs  []error
		wg    sync.WaitGroup
		next  = make(chan struct{}, n)
	)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if ctx.Err() != nil {
					return
				}
				c, err := connector.Connect(ctx)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return conns, err
	}
	if len(conns) < n {
		return conns, fmt.Errorf("only %d sessions: %w", len(conns), ctx.Err())
	}
	return conns, nil
}

// readOnce runs one read on every session, 16 sessions at a time.
func readOnce(ctx context.Context, conns []driver.Conn) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan driver.Conn, len(conns))
	)
	for _, c := range conns {
		next <- c
	}
	close(next)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				if ctx.Err() != nil {
					return
				}
				if err := queryOne(ctx, c, "SELECT 1"); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

func queryOne(ctx context.Context, c driver.Conn, query string) error {
	q, ok := c.(driver.QueryerContext)
	if !ok {
		return errors.New("driver connection cannot query")
	}
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return err
	}
	dest := make([]driver.Value, len(rows.Columns()))
	for {
		if err := rows.Next(dest); err != nil {
			rows.Close()
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// threadsConnected is each server's Threads_connected, primary first.
func threadsConnected() ([]int64, error) {
	var out []int64
	for _, s := range topo.Servers() {
		n, err := s.GlobalStatus("Threads_connected")
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// rss is a process's resident memory (VmRSS of /proc/PID/status) in bytes.
func rss(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// settledRSS waits (up to 5s) until VmRSS changes by less than 1% over
// 200ms, and returns it.
func settledRSS(pid int) (int64, error) {
	last, err := rss(pid)
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		<-tick.C
		now, err := rss(pid)
		if err != nil {
			return 0, err
		}
		d := now - last
		if d < 0 {
			d = -d
		}
		if d*100 < last {
			return now, nil
		}
		last = now
	}
	return last, nil
}

func (r *idleReport) render() string {
	var w bytes.Buffer
	fmt.Fprintf(&w, "## Idle client sessions (generated by `make bench`)\n\n")
	r.machine.render(&w)
	w.WriteString("\nA fresh Sluice process (readwritesplit, `max_procs: " + benchMaxProcs() + "`, bundled broker) per row; the sessions are go-sql-driver connections " +
		"that logged in as `sbtest` and then stay idle. Resident memory is the process's VmRSS. \"After one read\" is after every session " +
		"ran one `SELECT` (routed to a replica, so each session then holds a replica connection too).\n\n")
	w.WriteString("| Sluice | sessions | RSS fresh MB | RSS with sessions MB | sessions cost MB | KB/session | backend connections (primary) | RSS after one read MB | KB/session after one read | backend connections (replicas) | login time |\n")
	w.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range r.results {
		fmt.Fprintf(&w, "| %s | %d | %.1f | %.1f | %.1f | %.1f | %d | %.1f | %.1f | %d | %s |\n",
			x.name, x.sessions, mb(x.rssStart), mb(x.rssLogin), mb(x.rssLogin-x.rssStart),
			kbPer(x.rssLogin-x.rssStart, x.sessions), x.primaryBackends, mb(x.rssRead),
			kbPer(x.rssRead-x.rssStart, x.sessions), x.replicaBackend, x.loginTime.Round(time.Millisecond))
	}
	w.WriteString("\n")
	for _, x := range r.results {
		cost := x.rssLogin - x.rssStart
		// Scaled to 1,000 sessions when SLUICE_BENCH_SESSIONS differs.
		per1000 := float64(cost) / float64(x.sessions) * 1000
		verdict := "met"
		if per1000 > 100<<20 {
			verdict = "**missed**"
		}
		fmt.Fprintf(&w, "- Issue #10's target, 1,000 idle sessions cost ≤ 100 MB (%s): %.1f MB per 1,000 sessions (the whole process held %.1f MB with its %d sessions): %s\n",
			x.name, per1000/(1<<20), mb(x.rssLogin), x.sessions, verdict)
	}
	return w.String()
}
