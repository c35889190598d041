package lab

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

var topo *Topology

func TestMain(m *testing.M) {
	RunTests(m, Options{Replicas: 2}, func(t *Topology) { topo = t })
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestReplicationReachesAllReplicas(t *testing.T) {
	ctx := ctxT(t, 20*time.Second)
	p := topo.Primary
	if err := p.Exec(ctx, "CREATE OR REPLACE TABLE app.t1 (id INT PRIMARY KEY, v VARCHAR(32))"); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, "REPLACE INTO app.t1 VALUES (?, ?)", 1, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range topo.Replicas {
		db, err := r.RootDB()
		if err != nil {
			t.Fatal(err)
		}
		var v string
		if err := db.QueryRowContext(ctx, "SELECT v FROM app.t1 WHERE id = 1").Scan(&v); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		if v != "hello" {
			t.Fatalf("%s: got %q", r.Name, v)
		}
	}
}

func TestReplicasAreReadOnly(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	for _, s := range topo.Servers() {
		db, err := s.RootDB()
		if err != nil {
			t.Fatal(err)
		}
		var ro bool
		if err := db.QueryRowContext(ctx, "SELECT @@read_only").Scan(&ro); err != nil {
			t.Fatal(err)
		}
		if want := s != topo.Primary; ro != want {
			t.Errorf("%s: read_only=%v, want %v", s.Name, ro, want)
		}
	}
	// a normal account cannot write on a replica
	db, err := sql.Open("mysql", topo.Replicas[0].DSN(AppUser, AppPassword, "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, "CREATE TABLE app.nope (id INT)")
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1290 { // ER_OPTION_PREVENTS_STATEMENT
		t.Fatalf("write on replica: got %v, want error 1290", err)
	}
}

func TestAccountsOverTCP(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	cases := []struct {
		user, pass string
		ok         bool
	}{
		{AppUser, AppPassword, true},
		{MonitorUser, MonitorPassword, true},
		{SbtestUser, SbtestPassword, true},
		{NopassUser, "", true},
		{LocalUser, LocalPassword, true},
		{AppUser, "wrong", false},
		{OtherhostUser, "x", false},
	}
	for _, s := range topo.Servers() {
		for _, c := range cases {
			db, err := sql.Open("mysql", s.DSN(c.user, c.pass, ""))
			if err != nil {
				t.Fatal(err)
			}
			var u string
			err = db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&u)
			db.Close()
			if c.ok && err != nil {
				t.Errorf("%s: %s: %v", s.Name, c.user, err)
			}
			if !c.ok && err == nil {
				t.Errorf("%s: %s/%s logged in as %s, want access denied", s.Name, c.user, c.pass, u)
			}
		}
	}
}

func TestServerIDsDiffer(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	seen := map[int]string{}
	for _, s := range topo.Servers() {
		db, err := sql.Open("mysql", s.DSN(AppUser, AppPassword, ""))
		if err != nil {
			t.Fatal(err)
		}
		var id int
		err = db.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		if id != s.ServerID {
			t.Errorf("%s: @@server_id=%d, want %d", s.Name, id, s.ServerID)
		}
		if other, ok := seen[id]; ok {
			t.Errorf("%s and %s share server_id %d", s.Name, other, id)
		}
		seen[id] = s.Name
	}
}

func TestKillAndRestartReplica(t *testing.T) {
	ctx := ctxT(t, 40*time.Second)
	r := topo.Replicas[len(topo.Replicas)-1]
	p := topo.Primary
	if err := p.Exec(ctx, "CREATE OR REPLACE TABLE app.t2 (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // never leave a dead replica to the next test
		if !r.Running() {
			r.Start(context.Background())
		}
	})
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if r.Running() {
		t.Fatal("still running after Kill")
	}
	db, err := sql.Open("mysql", r.DSN(AppUser, AppPassword, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("killed replica still accepts connections")
	}
	// writes while the replica is down
	for i := 0; i < 10; i++ {
		if err := p.Exec(ctx, fmt.Sprintf("INSERT INTO app.t2 VALUES (%d)", i)); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %s", time.Since(began).Round(time.Millisecond))
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM app.t2").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Fatalf("replica has %d rows, want 10", n)
	}
}

func TestPauseResume(t *testing.T) {
	ctx := ctxT(t, 20*time.Second)
	r := topo.Replicas[0]
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			r.Resume()
		}
	}()
	db, err := sql.Open("mysql", r.DSN(AppUser, AppPassword, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = db.PingContext(pctx)
	cancel()
	if err == nil {
		t.Fatal("paused server answered")
	}
	if err := r.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 {
		t.Fatalf("FreePort: %d, %v", p, err)
	}
}

func TestRestartPrimaryReplicationResumes(t *testing.T) {
	ctx := ctxT(t, 40*time.Second)
	p := topo.Primary
	t.Cleanup(func() {
		if !p.Running() {
			p.Start(context.Background())
		}
	})
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, "CREATE OR REPLACE TABLE app.t3 (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, "INSERT INTO app.t3 VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range topo.Replicas {
		var n int
		db, _ := r.RootDB()
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM app.t3").Scan(&n); err != nil || n != 1 {
			t.Fatalf("%s: count=%d err=%v", r.Name, n, err)
		}
	}
}

func TestSecondTopologyCloseLeavesNothing(t *testing.T) {
	ctx := ctxT(t, 40*time.Second)
	dir := t.TempDir()
	tp, err := Start(ctx, Options{Replicas: 1, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, s := range tp.Servers() {
		pids = append(pids, s.Pid())
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if pid == 0 {
			t.Fatal("server had no pid")
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Close (%v)", pid, err)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("Close removed a caller-provided Dir: %v", err)
	}
}

// The servers run with DefaultMaxConnections unless Options say otherwise
// (internal/testenv/pooltest checks MariaDB's default, 151).
func TestMaxConnections(t *testing.T) {
	for _, s := range topo.Servers() {
		n, err := s.GlobalInt("max_connections")
		if err != nil {
			t.Fatal(err)
		}
		if n != DefaultMaxConnections {
			t.Errorf("%s: max_connections %d, want %d", s.Name, n, DefaultMaxConnections)
		}
	}
}
