// Package faulttest injects faults into real processes (mariadbd, bin/sluice
// serve, bin/sluice broker) and asserts what clients see: backends killed,
// stalled or cut off mid-result, Sluice killed with audit records spilled,
// the broker's disk full or the broker killed mid-write; a thousand
// concurrent clients and thousands of connect/quit cycles without leaks;
// and the ways around authentication that must stay closed. What each test
// proves is listed in docs/reliability.md.
//
// Tests run one at a time on one topology; each leaves every server
// running and caught up.
package faulttest

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

var (
	topo   *lab.Topology
	binary string
)

func TestMain(m *testing.M) {
	// Killed backends make the driver log "unexpected EOF"; the tests
	// assert what the client sees instead.
	mysql.SetLogger(log.New(io.Discard, "", 0))
	os.Exit(lab.MainWithSluice(m, lab.Options{Replicas: 2}, func(t *lab.Topology, bin string) { topo, binary = t, bin }))
}

// options shape a Sluice config.
type options struct {
	// addr overrides a server's address (a relay in front of it).
	addr map[string]string
	// genlog is the genlog section's body (indented two spaces); empty: off.
	genlog string
	// bundledBroker runs the broker inside Sluice.
	bundledBroker bool
	// extra is appended to the config verbatim.
	extra    string
	logLevel string
}

// sluice is a running bin/sluice serve process.
type sluice struct {
	*lab.Process
	t                     *testing.T
	dir, config           string
	listen, admin, broker string
}

func startSluice(t *testing.T, o options) *sluice {
	t.Helper()
	s := &sluice{t: t, dir: t.TempDir(), listen: lab.FreeAddr(t), admin: lab.FreeAddr(t), broker: lab.FreeAddr(t)}
	s.config = filepath.Join(s.dir, "sluice.yaml")
	servers := lab.ServersYAML(topo.Servers(), o.addr)
	level := o.logLevel
	if level == "" {
		level = "info"
	}
	genlog := "genlog:\n  enabled: false\n"
	if o.genlog != "" {
		genlog = "genlog:\n  enabled: true\n" + o.genlog
	}
	cfg := fmt.Sprintf(`name: faulttest
listen: %s
admin_listen: %s
servers:
%sservice_user: {user: monitor, password: monpass}
monitor:
  interval: 200ms
  timeout: 2s
connect_timeout: 2s
users_refresh_interval: 1s
log: {level: %s}
broker:
  enabled: %v
  listen: %s
  data_dir: %s
%s%s`, s.listen, s.admin, servers, level, o.bundledBroker, s.broker, filepath.Join(s.dir, "broker"), genlog, o.extra)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Process = lab.StartProcess(t, "sluice", func() bool { return lab.Healthy(s.admin) }, binary, "serve", "--config", s.config)
	return s
}

func (s *sluice) dsn(user, pass, db string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, pass, "tcp", s.listen, db
	cfg.Timeout = 5 * time.Second
	return cfg.FormatDSN()
}

// db opens a pool through Sluice; closed at the end of the test.
func (s *sluice) db(user, pass, dbName string) *sql.DB {
	s.t.Helper()
	db, err := sql.Open("mysql", s.dsn(user, pass, dbName))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { db.Close() })
	return db
}

// metric is the sum of every sample of name (any labels), or -1 when the
// scrape fails.
func (s *sluice) metric(name string) float64 {
	m, err := lab.Metrics(s.admin)
	if err != nil {
		return -1
	}
	return lab.MetricSum(m, name)
}

// fds counts the process's open file descriptors.
func (s *sluice) fds() int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Pid()))
	if err != nil {
		return -1
	}
	return len(entries)
}

// restoreTopology makes sure every server runs (SIGCONT, restart) and the
// replicas caught up: each test leaves the topology as it found it.
func restoreTopology(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, srv := range topo.Servers() {
		if srv.Running() {
			srv.Resume()
			continue
		}
		if err := srv.Start(ctx); err != nil {
			t.Errorf("restart %s: %v", srv.Name, err)
		}
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Errorf("replicas after the test: %v", err)
	}
}

// waitCaughtUp waits until the replicas have everything the primary has.
func waitCaughtUp(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}

// relay is a TCP relay on loopback in front of a backend. It can black-hole
// traffic (connections stay open, nothing passes: a partition) or cut every
// connection with a reset.
type relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	hole  bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		b, err := net.DialTimeout("tcp", r.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns[c], r.conns[b] = true, true
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(c, b)
		go r.pipe(b, c)
	}
}

// pipe copies from src to dst; while the relay black-holes, what it reads
// is dropped.
func (r *relay) pipe(src, dst net.Conn) {
	defer r.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			hole := r.hole
			r.mu.Unlock()
			if !hole {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// blackhole drops every byte from now on, in both directions, on existing
// and new connections, without closing anything.
func (r *relay) blackhole(on bool) {
	r.mu.Lock()
	r.hole = on
	r.mu.Unlock()
}

// cut resets every connection through the relay.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // RST, not FIN
		}
		c.Close()
		delete(r.conns, c)
	}
}

func (r *relay) close() {
	r.ln.Close()
	r.cut()
	r.wg.Wait()
}

// brokerProc is a `bin/sluice broker` process.
type brokerProc struct {
	*lab.Process
	addr string
}

// startBrokerProc runs the broker alone on addr with data in dataDir;
// extra is appended to the broker section.
func startBrokerProc(t *testing.T, addr, dataDir, extra string) *brokerProc {
	t.Helper()
	config := filepath.Join(t.TempDir(), "broker.yaml")
	cfg := fmt.Sprintf("broker:\n  listen: %s\n  data_dir: %s\n%s", addr, dataDir, extra)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &brokerProc{Process: lab.StartProcess(t, "broker", lab.Listening(addr), binary, "broker", "--config", config), addr: addr}
}
