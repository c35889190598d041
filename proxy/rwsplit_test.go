package proxy_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	mysqlconst "github.com/go-mysql-org/go-mysql/mysql"
	mysqldriver "github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/proxy"
	"github.com/sluice-proxy/sluice/router"
)

// serverIDs maps each lab server's @@server_id to its name: the ground
// truth of where a statement ran.
func serverIDs() map[int]string {
	ids := map[int]string{}
	for _, s := range topo.Servers() {
		ids[s.ServerID] = s.Name
	}
	return ids
}

func startSplit(t *testing.T) *sluice {
	t.Helper()
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second}, proxy.Config{})
	waitReplicasUsable(t, s)
	return s
}

// waitReplicasUsable waits until the proxy's monitor sees both replicas
// replicating with a known lag, so reads may go to them.
func waitReplicasUsable(t *testing.T, s *sluice) {
	t.Helper()
	lab.WaitFor(t, "both replicas usable", 10*time.Second, func() bool {
		n := 0
		for _, srv := range s.mon.Snapshot().Servers {
			if srv.Role == "replica" && srv.ReplicaLag >= 0 {
				n++
			}
		}
		return n == 2
	})
}

// oneConn returns a single connection, so session state is one session's.
func oneConn(t *testing.T, s *sluice, db string) *sql.Conn {
	t.Helper()
	pool := s.open(t, "app", "apppass", db)
	conn, err := pool.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ranOn(t *testing.T, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, query string, args ...any) string {
	t.Helper()
	var id int
	if err := q.QueryRowContext(context.Background(), query, args...).Scan(&id); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return serverIDs()[id]
}

func scanString(t *testing.T, conn *sql.Conn, query string) string {
	t.Helper()
	var v sql.NullString
	if err := conn.QueryRowContext(context.Background(), query).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v.String
}

func TestReadsSpreadOverReplicas(t *testing.T) {
	s := startSplit(t)
	// Sessions spread over the replicas, and each keeps reading from its
	// own while the replicas are equally busy.
	conns := []*sql.Conn{oneConn(t, s, "app"), oneConn(t, s, "app")}
	var home [2]string
	for i, c := range conns {
		seen := map[string]int{}
		for range 30 {
			seen[ranOn(t, c, "SELECT @@server_id")]++
		}
		if len(seen) != 1 || seen["primary"] != 0 {
			t.Fatalf("session %d: autocommit reads ran on %v; want one replica and never the primary", i, seen)
		}
		for name := range seen {
			home[i] = name
		}
	}
	if home[0] == home[1] {
		t.Fatalf("both sessions read from %s; new sessions should spread over the replicas", home[0])
	}
	conn := conns[0]
	// Writes and primary-only functions go to the primary.
	if got := ranOn(t, conn, "SELECT @@server_id FROM (SELECT LAST_INSERT_ID()) x"); got != "primary" {
		t.Fatalf("LAST_INSERT_ID ran on %s", got)
	}
	if got := ranOn(t, conn, "SELECT @@server_id FOR UPDATE"); got != "primary" {
		t.Fatalf("locking read ran on %s", got)
	}
}

func TestTransactionsPinToPrimary(t *testing.T) {
	s := startSplit(t)
	conn := oneConn(t, s, "app")
	ctx := context.Background()
	for _, begin := range []string{"BEGIN", "START TRANSACTION", "SET autocommit = 0"} {
		if _, err := conn.ExecContext(ctx, begin); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if got := ranOn(t, conn, "SELECT @@server_id"); got != "primary" {
				t.Fatalf("after %s a read ran on %s", begin, got)
			}
		}
		end := "COMMIT"
		if begin == "SET autocommit = 0" {
			end = "SET autocommit = 1"
		}
		if _, err := conn.ExecContext(ctx, end); err != nil {
			t.Fatal(err)
		}
		if got := ranOn(t, conn, "SELECT @@server_id"); got == "primary" {
			t.Fatalf("after %s reads still ran on the primary", end)
		}
	}
	// A transaction opened by DDL's implicit commit ends: status flags decide.
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS implicit_commit (a INT)"); err != nil {
		t.Fatal(err)
	}
	if got := ranOn(t, conn, "SELECT @@server_id"); got == "primary" {
		t.Fatal("after DDL's implicit commit reads still ran on the primary")
	}
	// go-sql-driver's transactions.
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := ranOn(t, tx, "SELECT @@server_id"); got != "primary" {
		t.Fatalf("read in a driver transaction ran on %s", got)
	}
	tx.Commit()
}

func TestReadOnlyTransactionOnOneReplica(t *testing.T) {
	s := startSplit(t)
	conn := oneConn(t, s, "app")
	ctx := context.Background()
	if _, err := conn.ExecContext(ctx, "START TRANSACTION READ ONLY"); err != nil {
		t.Fatal(err)
	}
	first := ranOn(t, conn, "SELECT @@server_id")
	if first == "primary" {
		t.Fatal("a read-only transaction ran on the primary")
	}
	for range 10 {
		if got := ranOn(t, conn, "SELECT @@server_id"); got != first {
			t.Fatalf("read-only transaction moved from %s to %s", first, got)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	// No longer pinned: with that replica drained, reads go to the other.
	if err := s.mon.SetMaintenance(ctx, first, true); err != nil {
		t.Fatal(err)
	}
	defer s.mon.SetMaintenance(ctx, first, false)
	if got := ranOn(t, conn, "SELECT @@server_id"); got == first || got == "primary" {
		t.Fatalf("after COMMIT and with %s drained, a read ran on %s", first, got)
	}
	// The replica's connection is lost inside the transaction: the client
	// is told and the session ends, as for a transaction on a lost
	// primary, rather than the rest of the transaction running on another
	// server without its snapshot.
	conn = oneConn(t, s, "app")
	if _, err := conn.ExecContext(ctx, "START TRANSACTION READ ONLY"); err != nil {
		t.Fatal(err)
	}
	var id int64
	// The server's own thread id (with pooling CONNECTION_ID() is the
	// session's, Sluice's).
	if err := conn.QueryRowContext(ctx, "SELECT @@pseudo_thread_id").Scan(&id); err != nil {
		t.Fatal(err)
	}
	home := ranOn(t, conn, "SELECT @@server_id")
	for _, r := range topo.Replicas {
		if r.Name == home {
			if err := r.Exec(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var me *mysqldriver.MySQLError
	if _, err := conn.ExecContext(ctx, "SELECT 1"); !errors.As(err, &me) || me.Number != 2013 {
		t.Fatalf("a read after the read-only transaction's replica connection was lost: %v; want error 2013", err)
	}
	if got := ranOn(t, oneConn(t, s, "app"), "SELECT @@server_id"); got == "" {
		t.Fatal("no read after the lost read-only transaction")
	}
}

func TestSessionStateReplayedOnReplicas(t *testing.T) {
	s := startSplit(t)
	conn := oneConn(t, s, "app")
	ctx := context.Background()
	exec := func(q string) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("SET SESSION sql_mode = 'ANSI_QUOTES,NO_ENGINE_SUBSTITUTION'")
	exec("SET NAMES latin1")
	exec("SET @x = 42, @s = 'it''s'")
	exec("SET @r = RAND()") // read back from the primary: replicas get the same value
	exec("USE sbtest")
	if got := scanString(t, conn, "SELECT @y := 7"); got != "7" {
		t.Fatalf("SELECT @y := 7 gave %q", got)
	}
	exec("SELECT 'into-value' INTO @z")
	want := map[string]string{
		"SELECT @@sql_mode":             "ANSI_QUOTES,NO_ENGINE_SUBSTITUTION",
		"SELECT @@character_set_client": "latin1",
		"SELECT @x":                     "42",
		"SELECT @s":                     "it's",
		"SELECT @y":                     "7",
		"SELECT @z":                     "into-value",
		"SELECT DATABASE()":             "sbtest",
	}
	r := scanString(t, conn, "/* sluice: route=primary */ SELECT @r")
	want["SELECT @r"] = r
	// On each replica: the session's own, and the other one, reached with
	// a routing hint (its connection opens and catches up then).
	for _, replica := range []string{"replica1", "replica2"} {
		hint := "/* sluice: route=server:" + replica + " */ "
		for q, w := range want {
			if got := scanString(t, conn, hint+q); got != w {
				t.Fatalf("%s = %q on %s, want %q (as on the primary)", q, got, replica, w)
			}
		}
		if got := ranOn(t, conn, hint+"SELECT @@server_id"); got != replica {
			t.Fatalf("route=server:%s ran on %s", replica, got)
		}
	}
	// A later change reaches connections opened before it.
	exec("SET @x = 43")
	for _, replica := range []string{"replica1", "replica2"} {
		if got := scanString(t, conn, "/* sluice: route=server:"+replica+" */ SELECT @x"); got != "43" {
			t.Fatalf("@x = %q on %s after it changed", got, replica)
		}
	}
}

func TestTemporaryTablesStayOnPrimary(t *testing.T) {
	s := startSplit(t)
	conn := oneConn(t, s, "app")
	ctx := context.Background()
	for _, q := range []string{"CREATE TEMPORARY TABLE scratch (a INT)", "INSERT INTO scratch VALUES (1), (2)"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM scratch").Scan(&n); err != nil || n != 2 {
			t.Fatalf("temporary table read: %d %v", n, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "DROP TEMPORARY TABLE scratch"); err != nil {
		t.Fatal(err)
	}
}

func TestPreparedStatementsSplit(t *testing.T) {
	s := startSplit(t)
	conn := oneConn(t, s, "app")
	ctx := context.Background()
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS ps (id INT PRIMARY KEY, v VARCHAR(16))"); err != nil {
		t.Fatal(err)
	}
	ins, err := conn.PrepareContext(ctx, "REPLACE INTO ps VALUES (?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	defer ins.Close()
	for i := range 20 {
		if _, err := ins.ExecContext(ctx, i, fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := topo.WaitReplicasCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	// A prepared read runs on the replicas, with its parameters, although
	// the driver sends the parameter types only on its first execute.
	sel, err := conn.PrepareContext(ctx, "SELECT v, @@server_id FROM ps WHERE id = ?")
	if err != nil {
		t.Fatal(err)
	}
	defer sel.Close()
	seen := map[string]bool{}
	read := func(i int) string {
		t.Helper()
		var v string
		var id int
		if err := sel.QueryRowContext(ctx, i).Scan(&v, &id); err != nil {
			t.Fatal(err)
		}
		if v != fmt.Sprintf("v%d", i) {
			t.Fatalf("id %d read %q", i, v)
		}
		seen[serverIDs()[id]] = true
		return serverIDs()[id]
	}
	first := read(0)
	for i := 1; i < 10; i++ {
		read(i)
	}
	// Drained, the session's replica hands the statement to the other one,
	// where it is prepared on first use and runs without the types.
	if err := s.mon.SetMaintenance(ctx, first, true); err != nil {
		t.Fatal(err)
	}
	defer s.mon.SetMaintenance(ctx, first, false)
	for i := 10; i < 20; i++ {
		read(i)
	}
	if seen["primary"] || len(seen) != 2 {
		t.Fatalf("prepared reads ran on %v", seen)
	}
	// The prepared write ran on the primary: its rows exist there.
	var n int
	db, _ := topo.Primary.RootDB()
	if err := db.QueryRow("SELECT COUNT(*) FROM app.ps").Scan(&n); err != nil || n != 20 {
		t.Fatalf("primary holds %d rows, %v", n, err)
	}
}

func TestRoutingHints(t *testing.T) {
	s := startSplit(t)
	conn := oneConn(t, s, "app")
	cases := map[string]string{
		"/* sluice: route=primary */ SELECT @@server_id":          "primary",
		"/* sluice: route=server:replica2 */ SELECT @@server_id":  "replica2",
		"SELECT @@server_id -- maxscale route to master":          "primary",
		"SELECT @@server_id -- maxscale route to server replica1": "replica1",
	}
	for q, want := range cases {
		for range 3 {
			if got := ranOn(t, conn, q); got != want {
				t.Fatalf("%s ran on %s, want %s", q, got, want)
			}
		}
	}
}

func TestBrokenReplicaGetsNoReads(t *testing.T) {
	s := startSplit(t)
	ctx := context.Background()
	if err := topo.Replicas[0].Exec(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Replicas[0].Exec(ctx, "START SLAVE SQL_THREAD") })
	lab.WaitFor(t, "the monitor to see replica1's stopped SQL thread", 10*time.Second, func() bool {
		for _, srv := range s.mon.Snapshot().Servers {
			if srv.Name == "replica1" {
				return srv.ReplicaLag < 0
			}
		}
		return false
	})
	conn := oneConn(t, s, "app")
	for range 20 {
		if got := ranOn(t, conn, "SELECT @@server_id"); got != "replica2" {
			t.Fatalf("a read ran on %s while replica1 was broken", got)
		}
	}
}

func TestReadConnRouteToReplica(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readconnroute", Target: "replica", MaxReplicationLag: 10 * time.Second}, proxy.Config{})
	conn := oneConn(t, s, "app")
	first := ranOn(t, conn, "SELECT @@server_id")
	if first == "primary" {
		t.Fatal("readconnroute target=replica connected to the primary")
	}
	for range 10 {
		if got := ranOn(t, conn, "SELECT @@server_id"); got != first {
			t.Fatalf("readconnroute session moved from %s to %s", first, got)
		}
	}
}

func TestCausalReadsNeverStale(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second,
		CausalReads: true, CausalReadsTimeout: 5 * time.Second}, proxy.Config{})
	ctx := context.Background()
	// Replicas apply every transaction a second late: stale, yet within
	// max_replication_lag, so they keep serving reads.
	for _, r := range topo.Replicas {
		for _, q := range []string{"STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 1", "START SLAVE"} {
			if err := r.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() {
		for _, r := range topo.Replicas {
			for _, q := range []string{"STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 0", "START SLAVE"} {
				r.Exec(ctx, q)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		topo.WaitReplicasCaughtUp(wctx)
	})
	conn := oneConn(t, s, "app")
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS causal (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "DELETE FROM causal"); err != nil {
		t.Fatal(err)
	}
	waitReplicasUsable(t, s)
	for i := range 4 {
		if _, err := conn.ExecContext(ctx, "INSERT INTO causal VALUES (?)", i); err != nil {
			t.Fatal(err)
		}
		var n, id int
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*), @@server_id FROM causal WHERE id = ?", i).Scan(&n, &id); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("read after write %d was stale (served by %s)", i, serverIDs()[id])
		}
		if serverIDs()[id] == "primary" {
			t.Fatalf("read after write %d went to the primary instead of waiting on a replica", i)
		}
	}
}

func TestResetAndMultiStatementWithSplit(t *testing.T) {
	s := startSplit(t)
	c := rawLogin(t, s, "app", "apppass", "app")
	if _, err := c.Execute("SET @v = 5"); err != nil {
		t.Fatal(err)
	}
	// Let a replica connection hold @v.
	r, err := c.Execute("SELECT @v")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r.GetInt(0, 0); v != 5 {
		t.Fatalf("@v = %d on a replica", v)
	}
	c.ResetSequence()
	if err := c.WritePacket([]byte{0, 0, 0, 0, mysqlconst.COM_RESET_CONNECTION}); err != nil {
		t.Fatal(err)
	}
	if pkt, err := c.ReadPacket(); err != nil || pkt[0] != mysqlconst.OK_HEADER {
		t.Fatalf("COM_RESET_CONNECTION: %v %v", pkt, err)
	}
	for range 6 {
		r, err := c.Execute("SELECT @v IS NULL, @@server_id")
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := r.GetInt(0, 0); v != 1 {
			id, _ := r.GetInt(0, 1)
			t.Fatalf("@v survived COM_RESET_CONNECTION on %s", serverIDs()[int(id)])
		}
	}
	// A multi-statement runs on the primary; one that changes session state
	// keeps the session there.
	if err := c.SetCapability(mysqlconst.CLIENT_MULTI_STATEMENTS); err != nil {
		t.Log(err)
	}
	res, err := c.ExecuteMultiple("SET @m = 1; SELECT @@server_id", func(result *mysqlconst.Result, err error) {})
	if err != nil {
		t.Skipf("go-mysql multi-statement: %v", err)
	}
	_ = res
	for range 5 {
		r, err := c.Execute("SELECT @@server_id")
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := r.GetInt(0, 0); serverIDs()[int(id)] != "primary" {
			t.Fatalf("after a session-changing multi-statement a read ran on %s", serverIDs()[int(id)])
		}
	}
}

func TestPrimaryReads(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second, PrimaryReads: true,
		CausalReads: true, CausalReadsTimeout: 5 * time.Second}, proxy.Config{})
	waitReplicasUsable(t, s)
	// New sessions spread over all three servers, the primary included.
	seen := map[string]int{}
	for range 6 {
		seen[ranOn(t, oneConn(t, s, "app"), "SELECT @@server_id")]++
	}
	if seen["primary"] == 0 || seen["replica1"] == 0 || seen["replica2"] == 0 {
		t.Fatalf("first reads of 6 sessions ran on %v; want every server", seen)
	}
	// A session reading from the primary after its own write reads it,
	// without a GTID wait there (MASTER_GTID_WAIT on a primary would time out).
	ctx := context.Background()
	for range 6 {
		conn := oneConn(t, s, "app")
		if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS primary_reads (id INT PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		if ranOn(t, conn, "SELECT @@server_id") != "primary" {
			continue
		}
		if _, err := conn.ExecContext(ctx, "REPLACE INTO primary_reads VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		waits, err := topo.Primary.GlobalStatus("Master_gtid_wait_count")
		if err != nil {
			t.Fatal(err)
		}
		var n, id int
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*), @@server_id FROM primary_reads WHERE id = 1").Scan(&n, &id); err != nil || n != 1 {
			t.Fatalf("read after write: %d rows, %v", n, err)
		}
		after, err := topo.Primary.GlobalStatus("Master_gtid_wait_count")
		if err != nil {
			t.Fatal(err)
		}
		if serverIDs()[id] == "primary" && after != waits {
			t.Fatalf("a causal read on the primary waited for its own write's GTID (MASTER_GTID_WAIT %d -> %d)", waits, after)
		}
		return
	}
	t.Fatal("no session of 6 read from the primary")
}

func TestMaxReplicaConnections(t *testing.T) {
	// Round robin sends each read to the next replica, so a session would
	// read from both; with one replica connection allowed it reads from one.
	rcfg := router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second, Balance: "round_robin"}
	for _, limit := range []int{0, 1} {
		rcfg.MaxReplicaConnections = limit
		s := startRouted(t, rcfg, proxy.Config{})
		waitReplicasUsable(t, s)
		conn := oneConn(t, s, "app")
		seen := map[string]int{}
		for range 10 {
			seen[ranOn(t, conn, "SELECT @@server_id")]++
		}
		if want := map[int]int{0: 2, 1: 1}[limit]; len(seen) != want || seen["primary"] != 0 {
			t.Fatalf("max_replica_connections %d: reads ran on %v; want %d replica(s)", limit, seen, want)
		}
		if limit == 0 {
			continue
		}
		// Its replica drained, the session closes that connection and reads
		// from the other: still one replica connection.
		var home string
		for name := range seen {
			home = name
		}
		var homeID int64
		var ranOnID int
		if err := conn.QueryRowContext(context.Background(), "/* sluice: route=replica */ SELECT @@pseudo_thread_id, @@server_id").Scan(&homeID, &ranOnID); err != nil {
			t.Fatal(err)
		}
		if serverIDs()[ranOnID] != home {
			t.Fatalf("@@pseudo_thread_id ran on %s, not on %s", serverIDs()[ranOnID], home)
		}
		ctx := context.Background()
		if err := s.mon.SetMaintenance(ctx, home, true); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.mon.SetMaintenance(ctx, home, false) })
		moved := map[string]int{}
		for range 10 {
			moved[ranOn(t, conn, "SELECT @@server_id")]++
		}
		if len(moved) != 1 || moved[home] != 0 || moved["primary"] != 0 {
			t.Fatalf("with %s drained, reads ran on %v; want the other replica alone", home, moved)
		}
		var server *lab.Server
		for _, r := range topo.Replicas {
			if r.Name == home {
				server = r
			}
		}
		db, err := server.RootDB()
		if err != nil {
			t.Fatal(err)
		}
		lab.WaitFor(t, "the session's connection to "+home+" closed", 10*time.Second, func() bool {
			var n int
			err := db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", homeID).Scan(&n)
			return err == nil && n == 0
		})
	}
}

func TestTransactionReplay(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{Recovery: proxy.RecoveryConfig{TransactionReplay: true, TransactionReplayMaxSize: 1 << 20}})
	ctx := context.Background()
	conn := oneConn(t, s, "app")
	exec := func(q string) error {
		_, err := conn.ExecContext(ctx, q)
		return err
	}
	must := func(q string) {
		t.Helper()
		if err := exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	primaryConnID := func() int64 {
		t.Helper()
		var id int64
		if err := conn.QueryRowContext(ctx, "/* sluice: route=primary */ SELECT @@pseudo_thread_id").Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// kill ends the session's primary connection on the server, as a
	// primary's crash would.
	kill := func(id int64) {
		t.Helper()
		if err := topo.Primary.Exec(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
			t.Fatal(err)
		}
	}
	must("CREATE TABLE IF NOT EXISTS replay (id INT PRIMARY KEY, v INT)")
	must("DELETE FROM replay")
	must("INSERT INTO replay VALUES (1, 0), (2, 0)")

	// The connection dies inside a transaction: the transaction is
	// replayed on a new connection and goes on.
	id := primaryConnID()
	must("BEGIN")
	must("UPDATE replay SET v = v + 1 WHERE id = 1")
	kill(id)
	must("UPDATE replay SET v = v + 1 WHERE id = 2")
	must("COMMIT")
	if now := primaryConnID(); now == id {
		t.Fatalf("still on connection %d after it was killed", id)
	}
	var v1, v2 int
	if err := conn.QueryRowContext(ctx, "/* sluice: route=primary */ SELECT (SELECT v FROM replay WHERE id = 1), (SELECT v FROM replay WHERE id = 2)").Scan(&v1, &v2); err != nil || v1 != 1 || v2 != 1 {
		t.Fatalf("after the replayed transaction: v = %d, %d (%v); want 1, 1", v1, v2, err)
	}

	// A statement answers differently on replay (another session inserted
	// the row it found missing): the client is told to retry, and nothing
	// of the transaction is applied.
	must("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") // no gap lock on the missing row
	id = primaryConnID()
	must("BEGIN")
	must("UPDATE replay SET v = v + 1 WHERE id = 1")
	must("DELETE FROM replay WHERE id = 5")
	if err := topo.Primary.Exec(ctx, "INSERT INTO app.replay VALUES (5, 0)"); err != nil {
		t.Fatal(err)
	}
	kill(id)
	err := exec("UPDATE replay SET v = v + 1 WHERE id = 2")
	var me *mysqldriver.MySQLError
	if !errors.As(err, &me) || me.Number != 1213 || !strings.Contains(me.Message, "answered differently") {
		t.Fatalf("replay with a different answer: %v; want error 1213 saying the statement answered differently", err)
	}
	must("ROLLBACK")
	if err := conn.QueryRowContext(ctx, "/* sluice: route=primary */ SELECT (SELECT v FROM replay WHERE id = 1), (SELECT v FROM replay WHERE id = 2)").Scan(&v1, &v2); err != nil || v1 != 1 || v2 != 1 {
		t.Fatalf("after the failed replay: v = %d, %d (%v); want 1, 1 (nothing applied)", v1, v2, err)
	}

	// Rows a transaction read are compared too: the same rows replay, and
	// a row another session changed since is a difference.
	id = primaryConnID()
	must("BEGIN")
	if err := conn.QueryRowContext(ctx, "SELECT v FROM replay WHERE id = 1").Scan(&v1); err != nil || v1 != 1 {
		t.Fatalf("read in a transaction: %d, %v", v1, err)
	}
	kill(id)
	must("UPDATE replay SET v = v + 1 WHERE id = 1")
	must("COMMIT")
	id = primaryConnID()
	must("BEGIN")
	if err := conn.QueryRowContext(ctx, "SELECT v FROM replay WHERE id = 2").Scan(&v2); err != nil || v2 != 1 {
		t.Fatalf("read in a transaction: %d, %v", v2, err)
	}
	if err := topo.Primary.Exec(ctx, "UPDATE app.replay SET v = 100 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	kill(id)
	if err := exec("UPDATE replay SET v = v + 1 WHERE id = 1"); !errors.As(err, &me) || me.Number != 1213 || !strings.Contains(me.Message, "other values") {
		t.Fatalf("replay of a read whose row changed: %v; want error 1213 saying the values differ", err)
	}
	must("ROLLBACK")

	// Prepared statements replay too, the lost command among them: the
	// driver prepares, executes and closes each (no interpolateParams).
	id = primaryConnID()
	must("BEGIN")
	if _, err := conn.ExecContext(ctx, "UPDATE replay SET v = v + ? WHERE id = ?", 10, 1); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT v FROM replay WHERE id = ?", 2).Scan(&v2); err != nil || v2 != 100 {
		t.Fatalf("prepared read in a transaction: %d, %v", v2, err)
	}
	kill(id)
	if _, err := conn.ExecContext(ctx, "UPDATE replay SET v = v + ? WHERE id = ?", 5, 2); err != nil {
		t.Fatalf("prepared write after the primary connection was lost: %v; want the transaction replayed", err)
	}
	must("COMMIT")
	if err := conn.QueryRowContext(ctx, "/* sluice: route=primary */ SELECT (SELECT v FROM replay WHERE id = 1), (SELECT v FROM replay WHERE id = 2)").Scan(&v1, &v2); err != nil || v1 != 12 || v2 != 105 {
		t.Fatalf("after the replayed prepared statements: v = %d, %d (%v); want 12, 105", v1, v2, err)
	}
	// A prepared read whose row another session changed is a difference.
	id = primaryConnID()
	must("BEGIN")
	if err := conn.QueryRowContext(ctx, "SELECT v FROM replay WHERE id = ?", 2).Scan(&v2); err != nil || v2 != 105 {
		t.Fatalf("prepared read in a transaction: %d, %v", v2, err)
	}
	if err := topo.Primary.Exec(ctx, "UPDATE app.replay SET v = 200 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	kill(id)
	if _, err := conn.ExecContext(ctx, "UPDATE replay SET v = v + ? WHERE id = ?", 1, 1); !errors.As(err, &me) || me.Number != 1213 || !strings.Contains(me.Message, "other values") {
		t.Fatalf("replay of a prepared read whose row changed: %v; want error 1213 saying the values differ", err)
	}
	must("ROLLBACK")

	// A transaction of a session with a temporary table is not replayed:
	// the table lived on the lost connection. The loss is an error and ends
	// the session, as without replay.
	id = primaryConnID()
	must("CREATE TEMPORARY TABLE scratch (a INT)")
	must("BEGIN")
	must("UPDATE replay SET v = v + 1 WHERE id = 1")
	kill(id)
	if err := exec("UPDATE replay SET v = v + 1 WHERE id = 1"); !errors.As(err, &me) || me.Number != 2013 {
		t.Fatalf("lost connection in a transaction of a session with a temporary table: %v; want error 2013", err)
	}
	if err := oneConn(t, s, "app").QueryRowContext(ctx, "/* sluice: route=primary */ SELECT (SELECT v FROM replay WHERE id = 1), (SELECT v FROM replay WHERE id = 2)").Scan(&v1, &v2); err != nil || v1 != 12 || v2 != 200 {
		t.Fatalf("at the end: v = %d, %d (%v); want 12, 200", v1, v2, err)
	}

	// Nor is a transaction that changed the session's state: the replay
	// restores the current state, in which its earlier statements would
	// run. Here it would write 5, not 13, and answer alike.
	conn = oneConn(t, s, "app")
	id = primaryConnID()
	must("SET @x = 13")
	must("BEGIN")
	must("UPDATE replay SET v = @x WHERE id = 1")
	must("SET @x = 5")
	must("SELECT 1") // Sluice has read @x back once this answers
	kill(id)
	if err := exec("UPDATE replay SET v = v + 1 WHERE id = 2"); !errors.As(err, &me) || me.Number != 2013 {
		t.Fatalf("lost connection in a transaction that changed a user variable: %v; want error 2013", err)
	}
	if err := oneConn(t, s, "app").QueryRowContext(ctx, "/* sluice: route=primary */ SELECT v FROM replay WHERE id = 1").Scan(&v1); err != nil || v1 != 12 {
		t.Fatalf("after the transaction that was not replayed: v = %d (%v); want 12", v1, err)
	}
}

// deadlock makes sessions a and b deadlock on the primary: each updates one
// row of app.deadlock in a transaction, then the other's. It returns the
// errors of the two second updates and of each COMMIT, once both ended.
func deadlock(t *testing.T, a, b *sql.Conn, prepared bool) (aErr, bErr error) {
	t.Helper()
	ctx := context.Background()
	update := func(c *sql.Conn, add, id int) error {
		if prepared {
			_, err := c.ExecContext(ctx, "UPDATE deadlock SET v = v + ? WHERE id = ?", add, id)
			return err
		}
		_, err := c.ExecContext(ctx, fmt.Sprintf("UPDATE deadlock SET v = v + %d WHERE id = %d", add, id))
		return err
	}
	for _, step := range []struct {
		c       *sql.Conn
		add, id int
	}{{a, 1, 1}, {b, 10, 2}} {
		if _, err := step.c.ExecContext(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if err := update(step.c, step.add, step.id); err != nil {
			t.Fatal(err)
		}
	}
	second := func(c *sql.Conn, add, id int, done chan<- error) {
		err := update(c, add, id)
		if err == nil {
			_, err = c.ExecContext(ctx, "COMMIT")
		} else {
			_, _ = c.ExecContext(ctx, "ROLLBACK")
		}
		done <- err
	}
	aDone, bDone := make(chan error, 1), make(chan error, 1)
	go second(a, 1, 2, aDone)
	waitRowLock(t, "a waiting for b's row lock")
	go second(b, 10, 1, bDone)
	return <-aDone, <-bDone
}

// waitRowLock waits until one transaction on the primary waits for a row
// lock. (information_schema.INNODB_TRX would not do: it is a cache that
// frequent reads keep from being refreshed.)
func waitRowLock(t *testing.T, what string) {
	t.Helper()
	lab.WaitFor(t, what, 10*time.Second, func() bool {
		n, err := topo.Primary.GlobalStatus("Innodb_row_lock_current_waits")
		return err == nil && n == 1
	})
}

func TestDeadlockRetry(t *testing.T) {
	ctx := context.Background()
	setup := func(s *sluice) (a, b *sql.Conn) {
		a, b = oneConn(t, s, "app"), oneConn(t, s, "app")
		for _, q := range []string{"CREATE TABLE IF NOT EXISTS deadlock (id INT PRIMARY KEY, v INT)",
			"DELETE FROM deadlock", "INSERT INTO deadlock VALUES (1, 0), (2, 0)"} {
			if _, err := a.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		return a, b
	}
	values := func(c *sql.Conn) (v1, v2 int) {
		t.Helper()
		if err := c.QueryRowContext(ctx, "/* sluice: route=primary */ SELECT (SELECT v FROM deadlock WHERE id = 1), (SELECT v FROM deadlock WHERE id = 2)").Scan(&v1, &v2); err != nil {
			t.Fatal(err)
		}
		return v1, v2
	}
	deadlocks := func() int64 {
		n, err := topo.Primary.GlobalStatus("Innodb_deadlocks")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Without the retry, the victim's client gets the deadlock.
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{Recovery: proxy.RecoveryConfig{TransactionReplay: true, TransactionReplayMaxSize: 1 << 20}})
	a, b := setup(s)
	before := deadlocks()
	aErr, bErr := deadlock(t, a, b, false)
	var me *mysqldriver.MySQLError
	if victim := errors.Join(aErr, bErr); !errors.As(victim, &me) || me.Number != 1213 || aErr != nil && bErr != nil {
		t.Fatalf("without retry_on_deadlock: errors %v and %v; want one deadlock (1213)", aErr, bErr)
	}
	if deadlocks() == before {
		t.Fatal("the primary counted no deadlock: the test did not make one")
	}

	// With it, both transactions commit, text and prepared alike: the
	// victim's is replayed once the other's ends.
	s = startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{Recovery: proxy.RecoveryConfig{TransactionReplay: true, TransactionReplayMaxSize: 1 << 20,
			TransactionReplayRetryOnDeadlock: true, TransactionReplayAttempts: 5}})
	for _, prepared := range []bool{false, true} {
		a, b = setup(s)
		before = deadlocks()
		if aErr, bErr := deadlock(t, a, b, prepared); aErr != nil || bErr != nil {
			t.Fatalf("with retry_on_deadlock (prepared %v): errors %v and %v; want both transactions committed", prepared, aErr, bErr)
		}
		if deadlocks() == before {
			t.Fatal("the primary counted no deadlock: the test did not make one")
		}
		if v1, v2 := values(a); v1 != 11 || v2 != 11 {
			t.Fatalf("after both transactions (prepared %v): v = %d, %d; want 11, 11", prepared, v1, v2)
		}
	}

	// A victim whose replay answers differently gets the deadlock, and is
	// not left inside what was replayed. The winner is a heavier
	// transaction on the primary itself, so the victim is known: it is
	// Sluice's session, whose first UPDATE matches no row on replay.
	a = oneConn(t, s, "app")
	root, err := topo.Primary.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	w, err := root.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, q := range []string{"CREATE TABLE IF NOT EXISTS app.deadlock_weight (id INT PRIMARY KEY)",
		"DELETE FROM app.deadlock_weight", "INSERT INTO app.deadlock_weight SELECT seq FROM app.seq_1_to_100"} {
		if _, err := w.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"BEGIN", "UPDATE deadlock SET v = 0 WHERE id = 1 AND v = 11"} {
		if _, err := a.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"BEGIN", "DELETE FROM app.deadlock_weight", "UPDATE app.deadlock SET v = 100 WHERE id = 2"} {
		if _, err := w.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	aDone := make(chan error, 1)
	go func() {
		_, err := a.ExecContext(ctx, "UPDATE deadlock SET v = 0 WHERE id = 2")
		aDone <- err
	}()
	waitRowLock(t, "Sluice's session waiting for the row lock")
	if _, err := w.ExecContext(ctx, "UPDATE app.deadlock SET v = 100 WHERE id = 1"); err != nil {
		t.Fatalf("the heavier transaction was the deadlock's victim: %v", err)
	}
	if _, err := w.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := <-aDone; !errors.As(err, &me) || me.Number != 1213 {
		t.Fatalf("victim whose replay answered differently: %v; want the deadlock (1213)", err)
	}
	var inTrx int
	if err := a.QueryRowContext(ctx, "/* sluice: route=primary */ SELECT @@in_transaction").Scan(&inTrx); err != nil || inTrx != 0 {
		t.Fatalf("after the failed replay: @@in_transaction = %d (%v); want 0", inTrx, err)
	}
	if v1, v2 := values(a); v1 != 100 || v2 != 100 {
		t.Fatalf("after the failed replay: v = %d, %d; want 100, 100 (only the winner's)", v1, v2)
	}
}

func TestReadOnlyTransactionReplay(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{Recovery: proxy.RecoveryConfig{TransactionReplay: true, TransactionReplayMaxSize: 1 << 20}})
	ctx := context.Background()
	if err := topo.Primary.Exec(ctx, "CREATE TABLE IF NOT EXISTS app.ro (id INT PRIMARY KEY, v INT)"); err != nil {
		t.Fatal(err)
	}
	if err := topo.Primary.Exec(ctx, "REPLACE INTO app.ro VALUES (1, 1)"); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var me *mysqldriver.MySQLError
	// begin opens a read-only transaction as user, reads the row and
	// returns the replica it runs on and the connection there, found from
	// the replicas (asked in the transaction, CONNECTION_ID() and
	// @@server_id would answer differently on replay): the session's one
	// connection of that user there.
	begin := func(user, password string) (conn *sql.Conn, home string, id int64) {
		t.Helper()
		pool := s.open(t, user, password, "app")
		conn, err := pool.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := conn.ExecContext(ctx, "START TRANSACTION READ ONLY"); err != nil {
			t.Fatal(err)
		}
		var v int
		if err := conn.QueryRowContext(ctx, "SELECT v FROM ro WHERE id = 1").Scan(&v); err != nil || v != 1 {
			t.Fatalf("read in the read-only transaction: %d, %v", v, err)
		}
		lab.WaitFor(t, "one connection of "+user+" on the replicas", 10*time.Second, func() bool {
			found := 0
			for _, r := range topo.Replicas {
				db, err := r.RootDB()
				if err != nil {
					return false
				}
				rows, err := db.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", user)
				if err != nil {
					return false
				}
				for rows.Next() {
					found++
					home = r.Name
					rows.Scan(&id)
				}
				rows.Close()
			}
			return found == 1
		})
		return conn, home, id
	}
	kill := func(home string, id int64) {
		t.Helper()
		for _, r := range topo.Replicas {
			if r.Name == home {
				if err := r.Exec(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	// The replica's connection is lost: the transaction goes on on the
	// other replica, where the same reads answer alike.
	conn, home, id := begin("sbtest", "sbtest")
	kill(home, id)
	var v int
	if err := conn.QueryRowContext(ctx, "SELECT v FROM ro WHERE id = 1").Scan(&v); err != nil || v != 1 {
		t.Fatalf("read after the read-only transaction's replica connection was lost: %d, %v; want it replayed elsewhere", v, err)
	}
	if now := ranOn(t, conn, "SELECT @@server_id"); now == home || now == "primary" {
		t.Fatalf("the replayed read-only transaction runs on %s; want the other replica", now)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}

	// A row it read changed meanwhile: the client is told to retry.
	conn, home, id = begin("local", "localpass")
	if err := topo.Primary.Exec(ctx, "UPDATE app.ro SET v = 2 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	kill(home, id)
	if err := conn.QueryRowContext(ctx, "SELECT v FROM ro WHERE id = 1").Scan(&v); !errors.As(err, &me) || me.Number != 1213 || !strings.Contains(me.Message, "other values") {
		t.Fatalf("replay of a read-only transaction whose row changed: %v; want error 1213 saying the values differ", err)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT v FROM ro WHERE id = 1").Scan(&v); err != nil || v != 2 {
		t.Fatalf("read after the failed replay: %d, %v; want 2", v, err)
	}
}
