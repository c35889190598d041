package proxy_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

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
			timeZone: fmt.Sprintf("+%02d:00", i%12)}
		for _, q := range []string{
			"SET SESSION sql_mode = '" + is.sqlMode + "'",
			"SET time_zone = '" + is.timeZone + "'",
			fmt.Sprintf("SET @who = %d", is.who),
		} {
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
		if err := is.conn.QueryRowContext(ctx, "SELECT @who, @@session.time_zone, @@session.sql_mode, DATABASE(), 0").Scan(&who, &tz, &mode, &db, &tag); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		if who != is.who || tz != is.timeZone || mode != is.sqlMode || db != is.db {
			return fmt.Errorf("round %d: text query saw @who=%d time_zone=%s sql_mode=%s db=%s; want %d %s %s %s",
				round, who, tz, mode, db, is.who, is.timeZone, is.sqlMode, is.db)
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
	var tz string
	var id int64
	if err := fresh.QueryRowContext(ctx, "SELECT @who, @@session.time_zone").Scan(&who, &tz); err != nil {
		t.Fatal(err)
	}
	if err := fresh.QueryRowContext(ctx, "SELECT LAST_INSERT_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	if who.Valid || tz != "SYSTEM" || id != 0 {
		t.Errorf("a new session sees @who=%v time_zone=%s LAST_INSERT_ID()=%d; want NULL, SYSTEM, 0", who, tz, id)
	}
}
