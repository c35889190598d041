package proxy_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/monitor"
	"github.com/sluice-proxy/sluice/proxy"
	"github.com/sluice-proxy/sluice/router"
)

// topo is the MariaDB primary and replicas every test in this package shares.
var topo *lab.Topology

func TestMain(m *testing.M) {
	lab.RunTests(m, lab.Options{Replicas: 2}, func(t *lab.Topology) { topo = t })
}

// sluice is an in-process proxy over the shared topology.
type sluice struct {
	srv      *proxy.Server
	accounts *proxy.Accounts
	addr     string
	mon      *monitor.Monitor
}

// startSluice runs a proxy that sends everything to the primary
// (readconnroute): for tests of the protocol itself.
func startSluice(t testing.TB, cfg proxy.Config, accts ...proxy.Account) *sluice {
	t.Helper()
	return startRouted(t, router.Config{Type: "readconnroute", Target: "primary", MaxReplicationLag: 10 * time.Second}, cfg, accts...)
}

// startRouted runs a proxy with the given router for one test and stops it
// when the test ends, checking that every session ended.
func startRouted(t testing.TB, rcfg router.Config, cfg proxy.Config, accts ...proxy.Account) *sluice {
	t.Helper()
	return startLogged(t, rcfg, cfg, nil, accts...)
}

// startLogged is startRouted whose log, at debug level, also goes to w.
func startLogged(t testing.TB, rcfg router.Config, cfg proxy.Config, w io.Writer, accts ...proxy.Account) *sluice {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	switch {
	case w != nil && testing.Verbose():
		log = slog.New(slog.NewTextHandler(io.MultiWriter(w, os.Stderr), &slog.HandlerOptions{Level: slog.LevelDebug}))
	case w != nil:
		log = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	case testing.Verbose():
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var servers []monitor.ServerConfig
	for _, s := range topo.Servers() {
		servers = append(servers, monitor.ServerConfig{Name: s.Name, Address: s.Addr(), Weight: 1})
	}
	mon := monitor.New(monitor.Config{Servers: servers, User: "monitor", Password: "monpass",
		Interval: 200 * time.Millisecond, Timeout: 2 * time.Second}, log)
	ctx, cancel := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if _, err := mon.WaitPrimary(wctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	source := proxy.ServerAccountSource(func() []string { return []string{topo.Primary.Addr()} }, "monitor", "monpass", 5*time.Second, nil)
	accounts := proxy.NewAccounts(source, 0, log)
	accounts.SetConfigAccounts(accts)
	if err := accounts.Load(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	if cfg.MaxAllowedPacket == 0 {
		cfg.MaxAllowedPacket = 64 << 20
	}
	if cfg.Pool.Mode == "" {
		// make test-pool runs the package again with sessions sharing
		// connections.
		cfg.Pool.Mode = os.Getenv("SLUICE_TEST_POOL")
	}
	cfg.Pool = cfg.Pool.WithDefaults()
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	rt := router.New(mon, rcfg)
	srv := proxy.NewServer(cfg, accounts, rt, nil, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	serveDone := make(chan struct{})
	go func() { defer close(serveDone); _ = srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-serveDone
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-monDone
	})
	return &sluice{srv: srv, accounts: accounts, addr: ln.Addr().String(), mon: mon}
}

// dsn is a go-sql-driver DSN through the proxy.
func (s *sluice) dsn(user, password, db string, params map[string]string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", s.addr, db
	cfg.Timeout = 5 * time.Second
	cfg.Params = params
	return cfg.FormatDSN()
}

func (s *sluice) open(t testing.TB, user, password, db string) *sql.DB {
	t.Helper()
	db2, err := sql.Open("mysql", s.dsn(user, password, db, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	return db2
}

func mustExec(t testing.TB, db *sql.DB, query string, args ...any) sql.Result {
	t.Helper()
	res, err := db.Exec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return res
}

func sqlErrCode(err error) uint16 {
	if me, ok := err.(*mysql.MySQLError); ok {
		return me.Number
	}
	return 0
}

var _ = fmt.Sprintf
