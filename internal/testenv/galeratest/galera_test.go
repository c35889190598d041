// Package galeratest runs a real Sluice process over a real three-node
// Galera cluster: what Galera users of a read/write split rely on.
package galeratest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

var (
	cluster *lab.Galera
	binary  string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if !lab.ServersNeeded() {
		return m.Run()
	}
	if err := lab.GaleraAvailable(); err != nil {
		if ci := os.Getenv("CI"); strings.EqualFold(ci, "true") || ci == "1" {
			fmt.Fprintf(os.Stderr, "galeratest: Galera is required on CI: %v\n", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "galeratest: no test run: %v\n", err)
		return 0
	}
	bin, err := lab.BuildSluice()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(filepath.Dir(bin))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := lab.StartGalera(ctx, lab.GaleraOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer g.Close()
	cluster, binary = g, bin
	return m.Run()
}

// startSluice runs Sluice over the cluster with node1 as the writer.
func startSluice(t *testing.T, retryOnDeadlock bool) *mysql.Config {
	t.Helper()
	dir := t.TempDir()
	listen, admin := lab.FreeAddr(t), lab.FreeAddr(t)
	cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
servers:
%sservice_user: {user: %s, password: %s}
monitor: {type: galera, preferred_writer: %s, interval: 200ms}
router: {transaction_replay: %v, transaction_replay_retry_on_deadlock: %v}
genlog: {enabled: false}
broker: {enabled: false}
`, listen, admin, lab.ServersYAML(cluster.Nodes, nil), lab.MonitorUser, lab.MonitorPassword,
		cluster.Nodes[0].Name, retryOnDeadlock, retryOnDeadlock)
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lab.StartProcess(t, "sluice", lab.Listening(listen), binary, "serve", "--config", path)
	dsn := mysql.NewConfig()
	dsn.User, dsn.Passwd, dsn.Net, dsn.Addr, dsn.DBName = lab.AppUser, lab.AppPassword, "tcp", listen, "app"
	dsn.Timeout, dsn.ReadTimeout = 5*time.Second, 10*time.Second
	return dsn
}

// TestCertificationFailureRetry: a transaction on the writer loses
// certification to a write on another node, which Galera reports as a
// deadlock. With router.transaction_replay_retry_on_deadlock Sluice replays
// it and the COMMIT succeeds; without, the client gets the deadlock.
func TestCertificationFailureRetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	writer, other := cluster.Nodes[0], cluster.Nodes[1]
	if err := writer.Exec(ctx, "CREATE TABLE IF NOT EXISTS app.cert (id INT PRIMARY KEY, v INT)"); err != nil {
		t.Fatal(err)
	}
	writerDB, err := writer.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	for _, retry := range []bool{false, true} {
		if err := writer.Exec(ctx, "REPLACE INTO app.cert VALUES (1, 0)"); err != nil {
			t.Fatal(err)
		}
		c, err := mysql.NewConnector(startSluice(t, retry))
		if err != nil {
			t.Fatal(err)
		}
		db := sql.OpenDB(c)
		defer db.Close()
		// Sluice knows the accounts and the writer once its monitor has
		// looked at the nodes.
		var conn *sql.Conn
		lab.WaitFor(t, "a session through Sluice on the writer", 20*time.Second, func() bool {
			if conn == nil {
				if conn, err = db.Conn(ctx); err != nil {
					conn = nil
					return false
				}
			}
			var port string
			return conn.QueryRowContext(ctx, "/* sluice: route=primary */ SELECT @@port").Scan(&port) == nil &&
				strings.HasSuffix(writer.Addr(), ":"+port)
		})
		for _, q := range []string{"BEGIN", "UPDATE cert SET v = v + 1 WHERE id = 1"} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		// Another node commits a write to the same row; once the writer has
		// applied it, the session's transaction was aborted for it.
		if err := other.Exec(ctx, "UPDATE app.cert SET v = 100 WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		lab.WaitFor(t, "the writer to apply the other node's write", 20*time.Second, func() bool {
			var v int
			return writerDB.QueryRowContext(ctx, "SELECT v FROM app.cert WHERE id = 1").Scan(&v) == nil && v == 100
		})
		_, err = conn.ExecContext(ctx, "COMMIT")
		var me *mysql.MySQLError
		if !retry {
			if !errors.As(err, &me) || me.Number != 1213 {
				t.Fatalf("COMMIT after losing certification, without retry: %v; want the deadlock (1213)", err)
			}
			conn.Close()
			continue
		}
		if err != nil {
			t.Fatalf("COMMIT after losing certification, with retry_on_deadlock: %v; want the transaction replayed and committed", err)
		}
		var v int
		if err := conn.QueryRowContext(ctx, "/* sluice: route=primary */ SELECT v FROM cert WHERE id = 1").Scan(&v); err != nil || v != 101 {
			t.Fatalf("after the replayed transaction: v = %d (%v); want 101", v, err)
		}
		conn.Close()
	}
}
