package lab

import (
	"context"
	"database/sql"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requireGalera skips the test when Galera is not installed, except on CI
// with SLUICE_GALERA=1, where that is a failure.
func requireGalera(t *testing.T) {
	t.Helper()
	if err := GaleraAvailable(); err != nil {
		if ci := os.Getenv("CI"); (strings.EqualFold(ci, "true") || ci == "1") && os.Getenv("SLUICE_GALERA") == "1" {
			t.Fatalf("Galera is required (CI=true, SLUICE_GALERA=1): %v", err)
		}
		t.Skip(err)
	}
}

func TestGaleraCluster(t *testing.T) {
	requireGalera(t)
	ctx := ctxT(t, 90*time.Second)
	began := time.Now()
	g, err := StartGalera(ctx, GaleraOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(g.Dir); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", g.Dir, err)
		}
	}()
	t.Logf("galera: %d nodes synced in %s (%s)", len(g.Nodes), time.Since(began).Round(time.Millisecond), g.Dir)
	if len(g.Nodes) != 3 {
		t.Fatalf("%d nodes", len(g.Nodes))
	}
	n1, n2, n3 := g.Nodes[0], g.Nodes[1], g.Nodes[2]

	// one writer, every node sees the row (wsrep_sync_wait: read after the
	// writeset is applied locally)
	if err := n1.Exec(ctx, "CREATE TABLE app.g (id INT PRIMARY KEY, v VARCHAR(32))"); err != nil {
		t.Fatal(err)
	}
	if err := n1.Exec(ctx, "INSERT INTO app.g VALUES (1, 'one')"); err != nil {
		t.Fatal(err)
	}
	readRow := func(s *Server, id int, want string) {
		t.Helper()
		db, err := s.RootDB()
		if err != nil {
			t.Fatal(err)
		}
		var v string
		err = db.QueryRowContext(ctx, "SET STATEMENT wsrep_sync_wait=1 FOR SELECT v FROM app.g WHERE id = ?", id).Scan(&v)
		if err != nil || v != want {
			t.Fatalf("%s: row %d: got %q, %v; want %q", s.Name, id, v, err, want)
		}
	}
	readRow(n2, 1, "one")
	readRow(n3, 1, "one")

	// wsrep_local_index is 0, 1, 2 in some order; the monitor account reads
	// the status over TCP
	var idx []int
	for _, s := range g.Nodes {
		db, err := sql.Open("mysql", s.DSN(MonitorUser, MonitorPassword, ""))
		if err != nil {
			t.Fatal(err)
		}
		var name, v string
		err = db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'wsrep_local_index'").Scan(&name, &v)
		db.Close()
		if err != nil {
			t.Fatalf("%s as %s: %v", s.Name, MonitorUser, err)
		}
		i, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: wsrep_local_index %q", s.Name, v)
		}
		idx = append(idx, i)
	}
	if slices.Sort(idx); !slices.Equal(idx, []int{0, 1, 2}) {
		t.Fatalf("wsrep_local_index values %v, want 0,1,2", idx)
	}

	// node 3 dies: the others form a primary component of 2
	if err := n3.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for _, s := range []*Server{n1, n2} {
		waitWsrep(t, ctx, s, "wsrep_cluster_size", "2")
	}
	t.Logf("cluster size 2 after %s", time.Since(killed).Round(time.Millisecond))
	if err := g.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n2.Exec(ctx, "INSERT INTO app.g VALUES (2, 'while node3 was down')"); err != nil {
		t.Fatal(err)
	}

	// it comes back, catches up (IST) and is Synced again
	restarted := time.Now()
	if err := n3.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("node3 synced again %s after restart", time.Since(restarted).Round(time.Millisecond))
	for _, s := range g.Nodes {
		waitWsrep(t, ctx, s, "wsrep_cluster_size", "3")
	}
	readRow(n3, 2, "while node3 was down")

	// node 1, which bootstrapped the cluster, leaves cleanly and comes back
	// as an ordinary member (not a second cluster)
	if err := n1.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Server{n2, n3} {
		waitWsrep(t, ctx, s, "wsrep_cluster_size", "2")
	}
	if err := n3.Exec(ctx, "INSERT INTO app.g VALUES (3, 'while node1 was down')"); err != nil {
		t.Fatal(err)
	}
	if err := n1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	readRow(n1, 3, "while node1 was down")
}

// waitWsrep polls s until the wsrep status variable name has value want.
func waitWsrep(t *testing.T, ctx context.Context, s *Server, name, want string) {
	t.Helper()
	var last string
	for {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := WsrepStatus(qctx, s)
		cancel()
		if err == nil && st[name] == want {
			return
		}
		last = st[name]
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %s: got %s, want %s: %v", s.Name, name, last, want, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
