package faulttest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// resources is what a leak would grow: Sluice's goroutines, open files,
// client sessions and backend connections, and the servers' connections.
type resources struct {
	goroutines, fds, sessions, backends float64
	threads                             map[string]int64
}

func (r resources) String() string {
	return fmt.Sprintf("goroutines %v, fds %v, sessions %v, backend connections %v, Threads_connected %v",
		r.goroutines, r.fds, r.sessions, r.backends, r.threads)
}

func (s *sluice) resources(t *testing.T) resources {
	t.Helper()
	m, err := lab.Metrics(s.admin)
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	return resources{
		goroutines: m["go_goroutines"],
		fds:        float64(s.fds()),
		sessions:   m["sluice_client_sessions"],
		backends:   m["sluice_backend_connections"],
		threads:    topo.GlobalStatusAll(t, "Threads_connected"),
	}
}

// settle waits until Sluice and the servers are back to base: no session
// or backend connection left, Threads_connected where it was (the monitor
// keeps one connection per server; a pool may briefly hold another), file
// descriptors and goroutines within a small slack (HTTP keep-alive of the
// scrape, timers).
func (s *sluice) settle(t *testing.T, base resources) {
	t.Helper()
	var now resources
	ok := func() bool {
		now = s.resources(t)
		if now.sessions != base.sessions || now.backends != base.backends {
			return false
		}
		if now.fds > base.fds+10 || now.goroutines > base.goroutines+10 {
			return false
		}
		for name, n := range now.threads {
			if n > base.threads[name]+2 {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no settling within 60s:\nbefore: %v\nnow:    %v", base, now)
		}
		timer := time.NewTimer(100 * time.Millisecond)
		<-timer.C
	}
	t.Logf("settled: %v", now)
}

// baseline waits for Sluice to be idle and returns its resources then.
func (s *sluice) baseline(t *testing.T) resources {
	t.Helper()
	// Every server healthy, so that reads go to the replicas.
	for _, srv := range topo.Servers() {
		s.waitServerUp(t, srv.Name, true)
	}
	var last resources
	lab.WaitFor(t, "an idle baseline", 30*time.Second, func() bool {
		r := s.resources(t)
		stable := r.sessions == 0 && r.backends == 0 && r.goroutines == last.goroutines && r.fds == last.fds
		last = r
		return stable
	})
	t.Logf("baseline: %v", last)
	return last
}

// TestThousandConnections holds 1,000 client sessions through Sluice at
// once, each with a primary connection and, after a read, a replica one;
// then closes them all. Sluice's sessions and backend connections follow
// exactly, and every resource returns to its baseline.
func TestThousandConnections(t *testing.T) {
	const n = 1000
	s := startSluice(t, options{})
	base := s.baseline(t)
	db, err := sql.Open("mysql", s.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)

	conns := make([]*sql.Conn, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	var next atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := db.Conn(ctx)
				if err == nil {
					var id int
					err = c.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	t.Logf("%d sessions opened and read from in %v", n, time.Since(began).Round(time.Millisecond))
	if failed.Load() > 0 {
		t.Fatalf("%d of %d sessions failed: %v", failed.Load(), n, firstErr.Load())
	}
	held := s.resources(t)
	t.Logf("holding: %v", held)
	if held.sessions != base.sessions+n {
		t.Fatalf("sluice_client_sessions %v while %d sessions are held", held.sessions, n)
	}
	// Each session: one primary connection (opened at login) and one to
	// the replica its read went to.
	if held.backends != base.backends+2*n {
		t.Fatalf("sluice_backend_connections %v while %d sessions that each read once are held; want %d", held.backends, n, 2*n)
	}
	if got := held.threads[topo.Primary.Name] - base.threads[topo.Primary.Name]; got < n {
		t.Fatalf("primary has %d more connections; want at least %d", got, n)
	}
	// All of them still answer.
	for _, c := range conns {
		var one int
		if err := c.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("held session: %v", err)
		}
		c.Close()
	}
	db.Close()
	s.settle(t, base)
}

// TestConnectionChurn runs 8,000 connect, authenticate, quit cycles on 16
// workers, and 2,000 more that drop the TCP connection without COM_QUIT
// (half with a FIN, half with a reset),
// then asserts that nothing leaked: Sluice's goroutines, file descriptors,
// sessions and backend connections, and the servers' Threads_connected.
func TestConnectionChurn(t *testing.T) {
	const cycles, abrupt, workers = 8000, 2000, 16
	s := startSluice(t, options{})
	base := s.baseline(t)
	cfg, err := mysql.ParseDSN(s.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var failed atomic.Int64
	var firstErr atomic.Value
	var next atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= cycles+abrupt {
					return
				}
				var err error
				if i < cycles {
					var c driver.Conn
					if c, err = connector.Connect(ctx); err == nil {
						err = c.Close() // COM_QUIT
					}
				} else {
					err = abruptCycle(s.listen, i%2 == 0)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(began)
	if ctx.Err() != nil {
		t.Fatalf("only %d of %d cycles within 120s", next.Load(), cycles+abrupt)
	}
	t.Logf("%d connect/authenticate/quit cycles and %d abrupt disconnects in %v (%.0f/s)", cycles, abrupt,
		took.Round(time.Millisecond), float64(cycles+abrupt)/took.Seconds())
	if failed.Load() > 0 {
		t.Fatalf("%d cycles failed: %v", failed.Load(), firstErr.Load())
	}
	s.settle(t, base)
}

// abruptCycle logs in with the raw client and drops the TCP connection
// without COM_QUIT: with a FIN, or with a reset when rst is set.
func abruptCycle(addr string, rst bool) error {
	r, err := dialRaw(addr)
	if err != nil {
		return err
	}
	defer r.close()
	if err := r.login("app", "apppass", "app"); err != nil {
		return err
	}
	if tc, ok := r.conn.(*net.TCPConn); ok && rst {
		tc.SetLinger(0)
	}
	return nil
}
