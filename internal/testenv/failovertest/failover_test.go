// Package failovertest kills and restarts real MariaDB servers under client
// load through a real Sluice process, and asserts what the clients saw. It
// has its own topology, since it changes which server is the primary.
package failovertest

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/segmentio/kafka-go"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

var (
	topo   *lab.Topology
	binary string
)

// semiSync makes every commit the primary acknowledges reach a replica's
// relay log first (AFTER_SYNC). With asynchronous replication a primary
// killed under load can hold a commit no replica received; after failover it
// has diverged and cannot rejoin, which is MariaDB's rule, not Sluice's.
var semiSync = []string{
	"--rpl-semi-sync-master-enabled=ON",
	"--rpl-semi-sync-slave-enabled=ON",
	"--rpl-semi-sync-master-wait-point=AFTER_SYNC",
	// Without replicas (the lab setting itself up) a commit does not wait.
	"--rpl-semi-sync-master-wait-no-slave=OFF",
}

// semiSyncActive reports whether s is a semi-sync primary that at least one
// replica acknowledges.
func semiSyncActive(s *lab.Server) bool {
	db, err := s.RootDB()
	if err != nil {
		return false
	}
	var name, status string
	err = db.QueryRow("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'").Scan(&name, &status)
	return err == nil && status == "ON"
}

func TestMain(m *testing.M) {
	opts := lab.Options{Replicas: 2, ExtraArgs: semiSync}
	os.Exit(lab.MainWithSluice(m, opts, func(t *lab.Topology, bin string) { topo, binary = t, bin }))
}

type instance struct {
	*lab.Process
	listen, admin, broker string
}

// startSluice runs Sluice over the lab topology. With autoFailover the
// monitor fails over and rejoins, statements for the primary wait up to 4s
// for one (router.primary_wait), within the load's 5s deadline, and a
// transaction that loses its primary is replayed on the next.
func startSluice(t *testing.T, autoFailover bool) *instance {
	t.Helper()
	dir := t.TempDir()
	in := &instance{listen: lab.FreeAddr(t), admin: lab.FreeAddr(t), broker: lab.FreeAddr(t)}
	primaryWait := "0s"
	if autoFailover {
		primaryWait = "4s"
	}
	cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
servers:
%sservice_user: {user: monitor, password: monpass}
monitor:
  interval: 200ms
  timeout: 1s
  auto_failover: %v
  failover_timeout: 1s
  auto_rejoin: %v
  replication_user: {user: repl, password: replpass}
router: {primary_wait: %s, transaction_replay: %v}
connect_timeout: 2s
genlog: {enabled: false}
broker: {enabled: true, listen: %s, data_dir: %s}
`, in.listen, in.admin, lab.ServersYAML(topo.Servers(), nil), autoFailover, autoFailover, primaryWait, autoFailover, in.broker, filepath.Join(dir, "broker")) + lab.PoolYAML()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	in.Process = lab.StartProcess(t, "sluice", func() bool { return in.primary() != "" }, binary, "serve", "--config", path)
	return in
}

// appConfig is the DSN of the app account through Sluice.
func (in *instance) appConfig() *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "app", "apppass", "tcp", in.listen, "app"
	return cfg
}

// primary asks Sluice's admin API which server is the primary.
func (in *instance) primary() string {
	resp, err := http.Get("http://" + in.admin + "/v1/servers")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var servers []struct {
		Name string
		Role string
	}
	if json.NewDecoder(resp.Body).Decode(&servers) != nil {
		return ""
	}
	for _, s := range servers {
		if s.Role == "primary" {
			return s.Name
		}
	}
	return ""
}

func (in *instance) server(name string) (role string, broken bool) {
	s := in.serverView(name)
	return s.Role, s.State == "broken"
}

// serverView is what Sluice's admin API says of one server.
type serverView struct {
	Name     string
	Role     string
	State    string
	SemiSync bool `json:"semi_sync"`
}

func (in *instance) serverView(name string) serverView {
	resp, err := http.Get("http://" + in.admin + "/v1/servers")
	if err != nil {
		return serverView{}
	}
	defer resp.Body.Close()
	var servers []serverView
	json.NewDecoder(resp.Body).Decode(&servers)
	for _, s := range servers {
		if s.Name == name {
			return s
		}
	}
	return serverView{}
}

// load writes and reads through Sluice on one connection until stopped,
// counting outcomes. Every statement has a deadline: a hang is an error.
type load struct {
	writesOK, writesFailed, readsOK, readsFailed atomic.Int64
	hung                                         atomic.Int64
	lastReadErr, lastWriteErr                    atomic.Value
	stop                                         chan struct{}
	done                                         chan struct{}
}

func startLoad(t *testing.T, in *instance, table string) *load {
	cfg := in.appConfig()
	cfg.Timeout = 2 * time.Second
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS " + table + " (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	// The load's reads go to the replicas: they must have the table first.
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if err := topo.WaitReplicasCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer db.Close()
		for i := 0; i < 100000; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := db.ExecContext(ctx, "INSERT INTO "+table+" VALUES (?)", i)
			switch {
			case ctx.Err() != nil:
				l.hung.Add(1)
			case err != nil:
				l.writesFailed.Add(1)
				l.lastWriteErr.Store(err.Error())
			default:
				l.writesOK.Add(1)
			}
			var n int
			err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n)
			switch {
			case ctx.Err() != nil:
				l.hung.Add(1)
			case err != nil:
				l.readsFailed.Add(1)
				l.lastReadErr.Store(err.Error())
			default:
				l.readsOK.Add(1)
			}
			cancel()
			tick := time.NewTimer(5 * time.Millisecond)
			<-tick.C
		}
	}()
	t.Cleanup(l.finish)
	return l
}

func (l *load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// progress waits until the load has done more of what ok counts.
func (l *load) progress(t *testing.T, what string, ok *atomic.Int64) {
	t.Helper()
	n := ok.Load()
	lab.WaitFor(t, what, 20*time.Second, func() bool { return ok.Load() > n+5 })
}

func TestReplicaFailuresUnderLoad(t *testing.T) {
	in := startSluice(t, false)
	l := startLoad(t, in, "replicafail")
	l.progress(t, "reads before", &l.readsOK)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r1, r2 := topo.Replicas[0], topo.Replicas[1]
	// A replica killed and restarted.
	if err := r1.Kill(); err != nil {
		t.Fatal(err)
	}
	l.progress(t, "reads with a replica down", &l.readsOK)
	if err := r1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "replica1 back", 20*time.Second, func() bool { role, broken := in.server(r1.Name); return role == "replica" && !broken })
	// A replica's SQL thread stopped.
	if err := r2.Exec(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "replica2 broken", 20*time.Second, func() bool { _, broken := in.server(r2.Name); return broken })
	l.progress(t, "reads with a broken replica", &l.readsOK)
	if err := r2.Exec(ctx, "START SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	// A replica delayed: still usable within max_replication_lag, reads go on.
	for _, q := range []string{"STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 2", "START SLAVE"} {
		if err := r1.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	l.progress(t, "reads with a delayed replica", &l.readsOK)
	for _, q := range []string{"STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 0", "START SLAVE"} {
		r1.Exec(ctx, q)
	}
	l.finish()
	t.Logf("writes ok %d failed %d, reads ok %d failed %d (%v)", l.writesOK.Load(), l.writesFailed.Load(), l.readsOK.Load(), l.readsFailed.Load(), l.lastReadErr.Load())
	if l.readsFailed.Load() != 0 || l.writesFailed.Load() != 0 || l.hung.Load() != 0 {
		t.Fatal("clients saw errors although the primary stayed up")
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPrimaryDownWithoutFailover(t *testing.T) {
	in := startSluice(t, false)
	l := startLoad(t, in, "nofailover")
	l.progress(t, "writes before the kill", &l.writesOK)
	// A session with a transaction open on the primary.
	cfg := in.appConfig()
	txdb, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer txdb.Close()
	tx, err := txdb.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("INSERT INTO nofailover VALUES (-1)"); err != nil {
		t.Fatal(err)
	}
	if err := topo.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	// The open transaction gets a clear error, not a hang.
	commitDone := make(chan error, 1)
	go func() { commitDone <- tx.Commit() }()
	select {
	case err := <-commitDone:
		if err == nil {
			t.Fatal("COMMIT of a transaction on a killed primary succeeded")
		}
		t.Logf("open transaction on the lost primary: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("COMMIT on a killed primary hung")
	}
	// Writes fail with an error, reads carry on from the replicas.
	l.progress(t, "failed writes while the primary is down", &l.writesFailed)
	l.progress(t, "reads while the primary is down", &l.readsOK)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topo.Primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The same session writes again once the primary is back.
	l.progress(t, "writes after the primary came back", &l.writesOK)
	l.finish()
	if l.hung.Load() != 0 {
		t.Fatalf("%d statements hung", l.hung.Load())
	}
	t.Logf("writes ok %d failed %d, reads ok %d failed %d (%v)", l.writesOK.Load(), l.writesFailed.Load(), l.readsOK.Load(), l.readsFailed.Load(), l.lastReadErr.Load())
	if l.readsFailed.Load() != 0 {
		t.Fatalf("%d autocommit reads failed while only the primary was down", l.readsFailed.Load())
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFailoverRejoinAndSwitchover(t *testing.T) {
	in := startSluice(t, true)
	l := startLoad(t, in, "failover")
	l.progress(t, "writes before the kill", &l.writesOK)
	lab.WaitFor(t, "semi-sync replication on the primary", 10*time.Second, func() bool { return semiSyncActive(topo.Primary) })
	lab.WaitFor(t, "Sluice to report semi-sync on the primary and a replica", 10*time.Second, func() bool {
		return in.serverView("primary").SemiSync && in.serverView("replica1").SemiSync
	})
	// A transaction open on the primary when it dies, with prepared
	// statements (the driver prepares each statement with arguments).
	c, err := mysql.NewConnector(in.appConfig())
	if err != nil {
		t.Fatal(err)
	}
	txDB := sql.OpenDB(c)
	defer txDB.Close()
	tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer tcancel()
	tx, err := txDB.BeginTx(tctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(tctx, "INSERT INTO failover VALUES (?)", -10); err != nil {
		t.Fatal(err)
	}
	failedBefore := l.writesFailed.Load()
	if err := topo.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	// It goes on: Sluice replays it on the new primary (router.transaction_replay).
	if _, err := tx.ExecContext(tctx, "INSERT INTO failover VALUES (?)", -11); err != nil {
		t.Fatalf("a statement of the transaction open across the failover: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("COMMIT of the transaction open across the failover: %v", err)
	}
	// A client logging in now, before any replica is promoted, gets in
	// once one is: its login waits for the primary too.
	loginDone := make(chan error, 1)
	go func() {
		cfg := in.appConfig()
		cfg.Timeout, cfg.ReadTimeout = 2*time.Second, 5*time.Second
		c, err := mysql.NewConnector(cfg)
		if err != nil {
			loginDone <- err
			return
		}
		db := sql.OpenDB(c)
		defer db.Close()
		_, err = db.Exec("INSERT INTO failover VALUES (-2)")
		loginDone <- err
	}()
	lab.WaitFor(t, "a replica promoted", 20*time.Second, func() bool {
		p := in.primary()
		return p != "" && p != "primary"
	})
	newPrimary := in.primary()
	t.Logf("failover promoted %s", newPrimary)
	for _, r := range topo.Replicas {
		if r.Name != newPrimary {
			continue
		}
		db, err := r.RootDB()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRowContext(tctx, "SELECT COUNT(*) FROM app.failover WHERE id IN (-10, -11)").Scan(&n); err != nil || n != 2 {
			t.Fatalf("the replayed transaction's rows on %s: %d of 2 (%v)", newPrimary, n, err)
		}
	}
	// The session that was not in a transaction carries on writing.
	l.progress(t, "writes after failover", &l.writesOK)
	l.progress(t, "reads after failover", &l.readsOK)
	// With router.primary_wait the writes waited for the new primary: only
	// the one in flight on the killed server may have failed (it may have
	// run, so it is never retried).
	select {
	case err := <-loginDone:
		if err != nil {
			t.Fatalf("a login during the failover failed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a login during the failover hung")
	}
	if failed := l.writesFailed.Load() - failedBefore; failed > 1 {
		t.Fatalf("%d writes failed during the failover (last: %v); with primary_wait at most the one in flight may", failed, l.lastWriteErr.Load())
	}

	// The old primary comes back and is rejoined as a replica. It restarts
	// as one (--init-rpl-role=SLAVE): crash recovery then rolls back the
	// commits no replica acknowledged instead of keeping them.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := topo.Primary.Start(ctx, "--init-rpl-role=SLAVE"); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "the old primary rejoined as a healthy replica", 30*time.Second, func() bool {
		role, broken := in.server("primary")
		return role == "replica" && !broken
	})
	l.progress(t, "writes after rejoin", &l.writesOK)

	// Switch back through the admin API. The monitor withdraws the primary
	// before turning it read only, so writes wait for the new one.
	failedBefore = l.writesFailed.Load()
	resp, err := http.Post("http://"+in.admin+"/v1/switchover?to=primary", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("switchover: %d %s", resp.StatusCode, body)
	}
	lab.WaitFor(t, "primary back as primary", 20*time.Second, func() bool { return in.primary() == "primary" })
	lab.WaitFor(t, newPrimary+" following again", 20*time.Second, func() bool {
		role, broken := in.server(newPrimary)
		return role == "replica" && !broken
	})
	l.progress(t, "writes after switchover", &l.writesOK)
	if failed := l.writesFailed.Load() - failedBefore; failed > 1 {
		t.Fatalf("%d writes failed during the switchover (last: %v)", failed, l.lastWriteErr.Load())
	}
	l.finish()
	if l.hung.Load() != 0 {
		t.Fatalf("%d statements hung", l.hung.Load())
	}
	t.Logf("writes ok %d failed %d, reads ok %d failed %d", l.writesOK.Load(), l.writesFailed.Load(), l.readsOK.Load(), l.readsFailed.Load())
	if l.readsFailed.Load() != 0 {
		t.Fatalf("%d autocommit reads failed during failover (%v)", l.readsFailed.Load(), l.lastReadErr.Load())
	}
	// Each change was written to the sluice.events topic.
	events := readEvents(t, in.broker)
	for _, want := range []string{"failover", "rejoin", "switchover", "state_change"} {
		if events[want] == 0 {
			t.Fatalf("no %q record in sluice.events; got %v", want, events)
		}
	}
}

// readEvents counts the sluice.events records by kind, read with kafka-go.
func readEvents(t *testing.T, broker string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for ; time.Now().Before(deadline); <-tick.C {
		counts = map[string]int{}
		conns, err := kafka.DialLeader(context.Background(), "tcp", broker, "sluice.events", 0)
		if err != nil {
			continue
		}
		parts, err := conns.ReadPartitions()
		conns.Close()
		if err != nil {
			continue
		}
		for _, p := range parts {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: "sluice.events", Partition: p.ID, MaxWait: 200 * time.Millisecond})
			for {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				m, err := r.ReadMessage(ctx)
				cancel()
				if err != nil {
					break
				}
				var ev struct {
					Type  string `json:"type"`
					Event string `json:"event"`
				}
				if json.Unmarshal(m.Value, &ev) == nil && ev.Type == "topology" {
					counts[ev.Event]++
				}
			}
			r.Close()
		}
		if counts["switchover"] > 0 {
			break
		}
	}
	return counts
}
