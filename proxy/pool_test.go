package proxy_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/proxy"
	"github.com/sluice-proxy/sluice/router"
)

// startPooled runs a read/write split whose sessions share at most max
// connections per server.
func startPooled(t *testing.T, mode string, max int) *sluice {
	t.Helper()
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{Pool: proxy.PoolConfig{Mode: mode, MaxServerConnections: max, WaitTimeout: 20 * time.Second}})
	waitReplicasUsable(t, s)
	return s
}

// isolatedSession is one client of TestPoolIsolation with the state it set.
type isolatedSession struct {
	conn     *sql.Conn
	who      int
	db       string
	sqlMode  string
	timeZone string
	charset  string
	stmt     *sql.Stmt
	insertID int64
}

// TestPoolIsolation interleaves many sessions, each with its own sql_mode,
// time_zone, schema, user variable, prepared statement and LAST_INSERT_ID(),
// over two connections per server, and checks every answer against the
// session's own state: none leaks into another.
func TestPoolIsolation(t *testing.T) {
	s := startPooled(t, proxy.PoolMultiplex, 2)
	ctx := context.Background()
	for _, db := range []string{"iso_a", "iso_b"} {
		for _, q := range []string{
			"CREATE DATABASE IF NOT EXISTS " + db,
			"CREATE TABLE IF NOT EXISTS " + db + ".t (id INT AUTO_INCREMENT PRIMARY KEY, who INT, db VARCHAR(8) DEFAULT '" + db + "')",
		} {
			if err := topo.Primary.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	modes := []string{"ANSI_QUOTES", "NO_BACKSLASH_ESCAPES", "STRICT_TRANS_TABLES", "PIPES_AS_CONCAT"}
	const sessions = 12
	var all []*isolatedSession
	for i := range sessions {
		db := []string{"iso_a", "iso_b"}[i%2]
		conn := oneConn(t, s, db)
		is := &isolatedSession{conn: conn, who: 1000 + i, db: db, sqlMode: modes[i%len(modes)],
			timeZone: fmt.Sprintf("+%02d:00", i%12), charset: "utf8mb4"}
		qs := []string{
			"SET SESSION sql_mode = '" + is.sqlMode + "'",
			"SET time_zone = '" + is.timeZone + "'",
			fmt.Sprintf("SET @who = %d", is.who),
		}
		if i%3 == 0 {
			is.charset = "latin1"
			qs = append(qs, "SET NAMES latin1")
		}
		for _, q := range qs {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				t.Fatalf("session %d: %s: %v", i, q, err)
			}
		}
		// A server-side prepared statement (go-sql-driver prepares when
		// asked to), reading the session's own state.
		stmt, err := conn.PrepareContext(ctx, "SELECT @who, @@session.time_zone, @@session.sql_mode, DATABASE(), ?")
		if err != nil {
			t.Fatalf("session %d: prepare: %v", i, err)
		}
		is.stmt = stmt
		all = append(all, is)
	}
	check := func(is *isolatedSession, round int) error {
		var who, tag int
		var tz, mode, db string
		// Text protocol, routed to a replica.
		var cs string
		if err := is.conn.QueryRowContext(ctx, "SELECT @who, @@session.time_zone, @@session.sql_mode, DATABASE(), 0, @@character_set_client").Scan(&who, &tz, &mode, &db, &tag, &cs); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		if who != is.who || tz != is.timeZone || mode != is.sqlMode || db != is.db || cs != is.charset {
			return fmt.Errorf("round %d: text query saw @who=%d time_zone=%s sql_mode=%s db=%s charset=%s; want %d %s %s %s %s",
				round, who, tz, mode, db, cs, is.who, is.timeZone, is.sqlMode, is.db, is.charset)
		}
		// Binary protocol, the statement prepared on whichever connection.
		if err := is.stmt.QueryRowContext(ctx, round).Scan(&who, &tz, &mode, &db, &tag); err != nil {
			return fmt.Errorf("execute: %w", err)
		}
		if who != is.who || tz != is.timeZone || mode != is.sqlMode || db != is.db || tag != round {
			return fmt.Errorf("round %d: prepared statement saw @who=%d time_zone=%s sql_mode=%s db=%s tag=%d; want %d %s %s %s %d",
				round, who, tz, mode, db, tag, is.who, is.timeZone, is.sqlMode, is.db, round)
		}
		// A write in the session's schema; LAST_INSERT_ID() asked in a
		// later statement, after other sessions ran on the connection.
		res, err := is.conn.ExecContext(ctx, "INSERT INTO t (who) VALUES (@who)")
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		if is.insertID, err = res.LastInsertId(); err != nil {
			return err
		}
		var got int64
		var rowDB string
		if err := is.conn.QueryRowContext(ctx, "SELECT LAST_INSERT_ID()").Scan(&got); err != nil {
			return fmt.Errorf("LAST_INSERT_ID(): %w", err)
		}
		if got != is.insertID {
			return fmt.Errorf("round %d: LAST_INSERT_ID() = %d, the session's insert made %d", round, got, is.insertID)
		}
		if err := is.conn.QueryRowContext(ctx, "SELECT who, db FROM t WHERE id = LAST_INSERT_ID()").Scan(&who, &rowDB); err != nil {
			return fmt.Errorf("reading the inserted row: %w", err)
		}
		if who != is.who || rowDB != is.db {
			return fmt.Errorf("round %d: the row inserted is (%d, %s); want (%d, %s)", round, who, rowDB, is.who, is.db)
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i, is := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 15 {
				if err := check(is, round); err != nil {
					errs <- fmt.Errorf("session %d (%s, %s, %s): %w", i, is.db, is.sqlMode, is.timeZone, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Twelve sessions ran on at most two connections to each server.
	open := map[string]int{}
	for _, st := range s.srv.PoolStats() {
		open[st.Server] += st.Open
	}
	for server, n := range open {
		if n > 2 {
			t.Errorf("%d connections to %s; pool.max_server_connections is 2", n, server)
		}
	}
	if open["primary"] == 0 {
		t.Errorf("no pooled connection to the primary: %v", open)
	}
	// A new session sees none of it: defaults, no user variable.
	fresh := oneConn(t, s, "iso_a")
	var who sql.NullInt64
	var tz, cs string
	var id int64
	if err := fresh.QueryRowContext(ctx, "SELECT @who, @@session.time_zone, @@character_set_client").Scan(&who, &tz, &cs); err != nil {
		t.Fatal(err)
	}
	if cs != "utf8mb4" {
		t.Errorf("a new session's character set is %s; want utf8mb4, its own from login", cs)
	}
	if err := fresh.QueryRowContext(ctx, "SELECT LAST_INSERT_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	if who.Valid || tz != "SYSTEM" || id != 0 {
		t.Errorf("a new session sees @who=%v time_zone=%s LAST_INSERT_ID()=%d; want NULL, SYSTEM, 0", who, tz, id)
	}
}

// TestPoolHolds checks, with one connection per server, that a session
// keeps its connection exactly while something lives only on it: another
// session waits pool.wait_timeout and gets an error naming the pool, and
// gets the connection once the first lets go.
func TestPoolHolds(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{Pool: proxy.PoolConfig{Mode: proxy.PoolMultiplex, MaxServerConnections: 1,
			WaitTimeout: 200 * time.Millisecond, IdleTime: 800 * time.Millisecond}})
	waitReplicasUsable(t, s)
	ctx := context.Background()
	if err := topo.Primary.Exec(ctx, "CREATE TABLE IF NOT EXISTS app.holds (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"); err != nil {
		t.Fatal(err)
	}
	aDB := s.open(t, "app", "apppass", "app")
	a, err := aDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := oneConn(t, s, "app")
	exec := func(c *sql.Conn, q string) error {
		_, err := c.ExecContext(ctx, q)
		return err
	}
	must := func(c *sql.Conn, q string) {
		t.Helper()
		if err := exec(c, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// held: b's locking read (for the primary, and no write: it holds
	// nothing after) finds the primary's one connection taken.
	const probe = "SELECT COUNT(*) FROM holds FOR UPDATE"
	held := func(why string) {
		t.Helper()
		err := exec(b, probe)
		if err == nil || !strings.Contains(err.Error(), "pool.max_server_connections") || !strings.Contains(err.Error(), "primary") {
			t.Fatalf("%s: another session's write got %v; want the pool's error naming the primary", why, err)
		}
	}
	free := func(why string) {
		t.Helper()
		if err := exec(b, probe); err != nil {
			t.Fatalf("%s: another session's write: %v", why, err)
		}
	}
	free("nothing held")

	must(a, "BEGIN")
	must(a, "INSERT INTO holds (v) VALUES (1)")
	held("a transaction open")
	must(a, "COMMIT")
	free("after COMMIT")

	must(a, "SET autocommit = 0")
	must(a, "SELECT * FROM holds FOR UPDATE")
	held("autocommit off")
	must(a, "SET autocommit = 1")
	free("autocommit back on")

	must(a, "CREATE TEMPORARY TABLE tmp_hold (x INT)")
	held("a temporary table")
	// The admin API says why.
	holds := map[string]string{}
	for _, info := range s.srv.SessionList() {
		holds[info.User+fmt.Sprint(len(info.Backends))] = info.Holds
	}
	if holds["app1"] != "temporary tables" {
		t.Fatalf("sessions hold %v; want one app session holding its connection for temporary tables", holds)
	}
	must(a, "DROP TEMPORARY TABLE tmp_hold")
	free("temporary table dropped")

	must(a, "LOCK TABLES holds WRITE")
	held("LOCK TABLES")
	must(a, "UNLOCK TABLES")
	free("UNLOCK TABLES")

	// A write's warnings (and ROW_COUNT()) stay readable by the next
	// command, then the connection goes.
	must(a, "DELETE FROM holds WHERE id = CAST('x' AS SIGNED)")
	held("warnings not yet read")
	var level, msg string
	var code int
	if err := a.QueryRowContext(ctx, "SHOW WARNINGS").Scan(&level, &code, &msg); err != nil || code != 1292 {
		t.Fatalf("SHOW WARNINGS after the warning: %d %q, %v; want 1292", code, msg, err)
	}
	free("warnings read")
	// So does a write's row count, for ROW_COUNT().
	must(a, "INSERT INTO holds (v) VALUES (5), (6), (7)")
	held("a write's row count not yet asked for")
	var rowCount int
	if err := a.QueryRowContext(ctx, "SELECT ROW_COUNT()").Scan(&rowCount); err != nil || rowCount != 3 {
		t.Fatalf("ROW_COUNT() after inserting 3 rows: %d, %v", rowCount, err)
	}
	free("row count read")
	// Unread, they are let go after pool.idle_time.
	must(a, "DELETE FROM holds WHERE id = CAST('y' AS SIGNED)")
	time.Sleep(time.Second) // past pool.idle_time
	free("idle past pool.idle_time")

	// A named lock lives on the connection: a's for the rest of its session.
	must(a, "DO GET_LOCK('pool_hold', 0)")
	held("GET_LOCK")
	must(a, "DO GET_LOCK('pool_other', 0)")
	must(a, "DO RELEASE_LOCK('pool_other')")
	held("after GET_LOCK, until the session ends")
	a.Close()
	if err := aDB.Close(); err != nil { // the client connection, and with it the session, ends
		t.Fatal(err)
	}
	lab.WaitFor(t, "the primary's connection free", 5*time.Second, func() bool {
		return exec(b, probe) == nil
	})
	// The lock's connection was closed, not handed on: the lock is free.
	root, err := topo.Primary.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	var free1 int
	if err := root.QueryRowContext(ctx, "SELECT IS_FREE_LOCK('pool_hold')").Scan(&free1); err != nil || free1 != 1 {
		t.Fatalf("IS_FREE_LOCK after its holder's session ended: %d, %v; want 1 (its connection closed)", free1, err)
	}
}

// TestPoolLogin: with pooling a login is checked against the accounts and,
// for its schema, on a pooled connection; it needs no primary.
func TestPoolLogin(t *testing.T) {
	s := startPooled(t, proxy.PoolMultiplex, 4)
	ctx := context.Background()
	var me *mysql.MySQLError
	if err := s.open(t, "app", "apppass", "no_such_schema").PingContext(ctx); !errors.As(err, &me) || me.Number != 1049 {
		t.Fatalf("login to a schema that does not exist: %v; want 1049", err)
	}
	if err := s.open(t, "app", "wrong", "app").PingContext(ctx); !errors.As(err, &me) || me.Number != 1045 {
		t.Fatalf("login with a wrong password: %v; want 1045", err)
	}
	// A login without a schema opens no server connection: nothing of
	// this user is pooled until its first statement.
	for _, q := range []string{"CREATE OR REPLACE USER 'pool_login'@'%' IDENTIFIED BY 'pl-pass-1'", "GRANT SELECT ON app.* TO 'pool_login'@'%'"} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'pool_login'@'%'") })
	opened := func() int {
		n := 0
		for _, st := range s.srv.PoolStats() {
			if st.User == "pool_login" {
				n += st.Open
			}
		}
		return n
	}
	db := s.open(t, "pool_login", "pl-pass-1", "")
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if n := opened(); n != 0 {
		t.Fatalf("%d server connections of pool_login after its login; want none", n)
	}
	var user string
	if err := conn.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&user); err != nil || user != "pool_login@%" {
		t.Fatalf("CURRENT_USER(): %q, %v", user, err)
	}
	if n := opened(); n != 1 {
		t.Fatalf("%d server connections of pool_login after one statement; want 1", n)
	}
}

// TestPoolKill: with pooling CONNECTION_ID() is the session's own id, stable
// while its statements move between server threads, and KILL takes it.
func TestPoolKill(t *testing.T) {
	s := startPooled(t, proxy.PoolMultiplex, 4)
	ctx := context.Background()
	a, b := oneConn(t, s, "app"), oneConn(t, s, "app")
	idOf := func(c *sql.Conn) int64 {
		t.Helper()
		var id int64
		if err := c.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	aID := idOf(a)
	for _, q := range []string{"SELECT CONNECTION_ID() FROM DUAL", "SELECT /* sluice: route=primary */ CONNECTION_ID()"} {
		var id int64
		if err := a.QueryRowContext(ctx, q).Scan(&id); err != nil || id != aID {
			t.Fatalf("%s: %d, %v; want the session's id %d", q, id, err, aID)
		}
	}
	if bID := idOf(b); bID == aID {
		t.Fatalf("two sessions share CONNECTION_ID() %d", aID)
	}
	// KILL QUERY reaches the statement wherever it runs (a replica here).
	done := make(chan error, 1)
	started := time.Now()
	go func() {
		var r int
		done <- a.QueryRowContext(ctx, "SELECT SLEEP(20)").Scan(&r)
	}()
	// The server's processlist names the session the pooled thread serves.
	lab.WaitFor(t, "a's SLEEP running, tagged with its session", 5*time.Second, func() bool {
		for _, srv := range topo.Servers() {
			db, err := srv.RootDB()
			if err != nil {
				continue
			}
			var n int
			info := fmt.Sprintf("/* sluice session %d */ SELECT SLEEP(20)", aID)
			if db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = ?", info).Scan(&n) == nil && n > 0 {
				return true
			}
		}
		return false
	})
	if _, err := b.ExecContext(ctx, fmt.Sprintf("KILL QUERY %d", aID)); err != nil {
		t.Fatalf("KILL QUERY %d: %v", aID, err)
	}
	select {
	case err := <-done:
		if took := time.Since(started); took > 10*time.Second {
			t.Fatalf("the killed SLEEP(20) took %v (%v)", took, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("KILL QUERY did not end the statement")
	}
	if got := idOf(a); got != aID {
		t.Fatalf("after KILL QUERY the session's CONNECTION_ID() is %d, was %d", got, aID)
	}
	// Another user without the privilege may not kill it.
	for _, q := range []string{"CREATE OR REPLACE USER 'pool_killer'@'%' IDENTIFIED BY 'pk-pass-1'", "GRANT SELECT ON app.* TO 'pool_killer'@'%'"} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'pool_killer'@'%'") })
	lab.WaitFor(t, "pool_killer known", 5*time.Second, func() bool {
		return s.open(t, "pool_killer", "pk-pass-1", "app").PingContext(ctx) == nil
	})
	other := s.open(t, "pool_killer", "pk-pass-1", "app")
	var me *mysql.MySQLError
	if _, err := other.ExecContext(ctx, fmt.Sprintf("KILL %d", aID)); !errors.As(err, &me) || me.Number != 1095 {
		t.Fatalf("another user's KILL: %v; want 1095", err)
	}
	if _, err := b.ExecContext(ctx, "KILL 4000000000"); !errors.As(err, &me) || me.Number != 1094 {
		t.Fatalf("KILL of an unknown id: %v; want 1094", err)
	}
	// KILL ends the session.
	if _, err := b.ExecContext(ctx, fmt.Sprintf("KILL %d", aID)); err != nil {
		t.Fatalf("KILL %d: %v", aID, err)
	}
	lab.WaitFor(t, "the killed session's next statement failing", 5*time.Second, func() bool {
		_, err := a.ExecContext(ctx, "DO 1")
		return err != nil
	})
}

// TestPoolIdleMode: with pool.mode idle a session gives its connection back
// only after pool.idle_time without a command (MaxScale's model).
func TestPoolIdleMode(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{Pool: proxy.PoolConfig{Mode: proxy.PoolIdle, MaxServerConnections: 1,
			WaitTimeout: 100 * time.Millisecond, IdleTime: 500 * time.Millisecond}})
	waitReplicasUsable(t, s)
	ctx := context.Background()
	a, b := oneConn(t, s, "app"), oneConn(t, s, "app")
	const probe = "SELECT 1 FROM DUAL FOR UPDATE" // to the primary, holding nothing after
	if _, err := a.ExecContext(ctx, probe); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ExecContext(ctx, probe); err == nil || !strings.Contains(err.Error(), "pool.max_server_connections") {
		t.Fatalf("another session, before a was idle for pool.idle_time: %v; want the pool's error", err)
	}
	lab.WaitFor(t, "a's connection back after pool.idle_time", 5*time.Second, func() bool {
		_, err := b.ExecContext(ctx, probe)
		return err == nil
	})
}
