package proxy_test

import (
	"context"
	"database/sql"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/proxy"
	"github.com/sluice-proxy/sluice/router"
)

// connect opens a pool of one connection for user, logged in, or returns
// the login error.
func connect(t *testing.T, s *sluice, user, pass string) (*sql.DB, error) {
	t.Helper()
	db, err := sql.Open("mysql", s.dsn(user, pass, "app", nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	return db, db.PingContext(context.Background())
}

func TestUserConnectionLimits(t *testing.T) {
	s := startSluice(t, proxy.Config{MaxUserConnections: 2, UserMaxConnections: map[string]int{"nopass": 1}})
	a1, err := connect(t, s, "app", "apppass")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, s, "app", "apppass"); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, s, "app", "apppass"); sqlErrCode(err) != 1203 {
		t.Fatalf("third session of app: %v, want error 1203", err)
	}
	if _, err := connect(t, s, "nopass", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, s, "nopass", ""); sqlErrCode(err) != 1203 {
		t.Fatalf("second session of nopass (limit 1): %v, want error 1203", err)
	}
	a1.Close()
	lab.WaitFor(t, "a freed slot", 10*time.Second, func() bool {
		c, err := connect(t, s, "app", "apppass")
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

func TestClientIdleTimeout(t *testing.T) {
	s := startSluice(t, proxy.Config{ClientIdleTimeout: 300 * time.Millisecond})
	db, err := connect(t, s, "app", "apppass")
	if err != nil {
		t.Fatal(err)
	}
	c, err := db.Conn(context.Background()) // pinned: no silent reconnect
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lab.WaitFor(t, "the idle session to be closed", 10*time.Second, func() bool { return s.srv.Sessions() == 0 })
	if err := c.PingContext(context.Background()); err == nil {
		t.Fatal("a session closed for inactivity still answers")
	}
	// A busy session is not closed.
	c2, err := connect(t, s, "app", "apppass")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if err := c2.PingContext(context.Background()); err != nil {
			t.Fatalf("an active session was closed: %v", err)
		}
	}
}

func TestBackendReadTimeout(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{BackendReadTimeout: 500 * time.Millisecond})
	c, err := connect(t, s, "app", "apppass")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var n int
	err = c.QueryRowContext(context.Background(), "SELECT SLEEP(3)").Scan(&n)
	if err == nil || time.Since(began) > 2500*time.Millisecond {
		t.Fatalf("a 3 s statement with backend_read_timeout 500ms: %v after %v", err, time.Since(began))
	}
	// The session goes on with fresh backend connections.
	if err := c.QueryRowContext(context.Background(), "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after a timeout: %v", err)
	}
}

// A long-lived session's memory stays bounded: prepared statements stop at
// max_prepared_stmt_count's answer, and a session that sets more variables
// than Sluice replays is pinned to the primary rather than growing its
// replay state; it keeps reading what it wrote.
func TestSessionStateBounded(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second}, proxy.Config{})
	db, err := connect(t, s, "app", "apppass")
	if err != nil {
		t.Fatal(err)
	}
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var stmts []*sql.Stmt
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	refused := false
	for i := range 1100 {
		st, err := c.PrepareContext(ctx, "SELECT ? + "+strconv.Itoa(i))
		if err != nil {
			if sqlErrCode(err) != 1461 || i < 1000 {
				t.Fatalf("prepare %d: %v, want error 1461 past the per-session limit", i, err)
			}
			refused = true
			break
		}
		stmts = append(stmts, st)
	}
	if !refused {
		t.Fatal("1,100 prepared statements in one session were all accepted")
	}
	for i := range 600 {
		if _, err := c.ExecContext(ctx, "SET @v"+strconv.Itoa(i)+" = "+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	var v, id int
	if err := c.QueryRowContext(ctx, "SELECT @v599, @@server_id").Scan(&v, &id); err != nil || v != 599 {
		t.Fatalf("after 600 user variables: %d %v", v, err)
	}
	if id != topo.Primary.ServerID {
		t.Fatalf("a session past the replayed-variable limit read from server %d, want the primary", id)
	}
	var pinned string
	for _, info := range s.srv.SessionList() {
		pinned = info.Pinned
	}
	if pinned == "" {
		t.Fatal("the session should say why it is pinned to the primary")
	}
}
