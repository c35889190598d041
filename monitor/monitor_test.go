package monitor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

var topo *lab.Topology

func TestMain(m *testing.M) {
	lab.RunTests(m, lab.Options{Replicas: 2}, func(t *lab.Topology) { topo = t })
}

func newMonitor(t *testing.T, cfg Config) *Monitor { return startMonitor(t, cfg, nil) }

// startMonitor runs a monitor over the lab topology until the test ends;
// onEvent, if not nil, hears its topology events.
func startMonitor(t *testing.T, cfg Config, onEvent func(Event)) *Monitor {
	t.Helper()
	for _, s := range topo.Servers() {
		cfg.Servers = append(cfg.Servers, ServerConfig{Name: s.Name, Address: s.Addr(), Weight: 1})
	}
	cfg.User, cfg.Password = lab.MonitorUser, lab.MonitorPassword
	if cfg.Interval == 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	cfg.Timeout = 2 * time.Second
	m := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.OnEvent = onEvent
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return m
}

func server(m *Monitor, name string) Server {
	for _, s := range m.Snapshot().Servers {
		if s.Name == name {
			return s
		}
	}
	return Server{}
}

func TestRolesAndReplication(t *testing.T) {
	m := newMonitor(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := m.WaitPrimary(ctx)
	if err != nil || p.Name != "primary" {
		t.Fatalf("primary %q, %v", p.Name, err)
	}
	lab.WaitFor(t, "healthy replicas", 10*time.Second, func() bool {
		for _, r := range topo.Replicas {
			if s := server(m, r.Name); s.Role != RoleReplica || s.Broken || !s.IORunning {
				return false
			}
		}
		return true
	})
	for _, r := range topo.Replicas {
		s := server(m, r.Name)
		if s.Role != RoleReplica || !s.IORunning || !s.SQLRunning || s.Broken || s.ReplicaLag < 0 {
			t.Fatalf("%s: %+v", r.Name, s)
		}
		if !sameAddress(s.SourceAddress, topo.Primary.Addr()) {
			t.Fatalf("%s follows %s, want %s", r.Name, s.SourceAddress, topo.Primary.Addr())
		}
		if s.GTIDPosition == "" || int(s.ServerID) != r.ServerID {
			t.Fatalf("%s: gtid %q server_id %d", r.Name, s.GTIDPosition, s.ServerID)
		}
	}
	// The lab replicates asynchronously (failovertest runs semi-sync).
	for _, s := range m.Snapshot().Servers {
		if s.SemiSync {
			t.Fatalf("%s reported semi-sync on an asynchronous topology", s.Name)
		}
	}
}

func TestBrokenAndDownReplicas(t *testing.T) {
	m := newMonitor(t, Config{})
	ctx := context.Background()
	r1, r2 := topo.Replicas[0], topo.Replicas[1]
	if err := r1.Exec(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "replica1 broken", 5*time.Second, func() bool { return server(m, "replica1").Broken })
	if err := r1.Exec(ctx, "START SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "replica1 healthy again", 5*time.Second, func() bool { return !server(m, "replica1").Broken })

	if err := r2.Kill(); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "replica2 down", 10*time.Second, func() bool {
		s := server(m, "replica2")
		return s.Role == RoleDown && !s.Up && s.LastError != ""
	})
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r2.Start(sctx); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "replica2 back", 15*time.Second, func() bool {
		s := server(m, "replica2")
		return s.Role == RoleReplica && !s.Broken
	})
	if p, ok := m.Snapshot().PrimaryServer(); !ok || p.Name != "primary" {
		t.Fatalf("primary lost while a replica was down: %+v", p)
	}
}

func TestHeartbeatLagWithHysteresis(t *testing.T) {
	m := newMonitor(t, Config{Heartbeat: true, HeartbeatTable: "sluice.heartbeat", MaxLag: time.Second, LagHysteresis: 0.5})
	ctx := context.Background()
	r1 := topo.Replicas[0]
	lab.WaitFor(t, "heartbeat lag measured", 10*time.Second, func() bool {
		s := server(m, "replica1")
		return s.ReplicaLag >= 0 && s.ReplicaLag < time.Second && !s.Lagging && m.lastBeat.Load() != 0
	})
	for _, q := range []string{"STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 3", "START SLAVE"} {
		if err := r1.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	restore := func() {
		for _, q := range []string{"STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 0", "START SLAVE"} {
			r1.Exec(ctx, q)
		}
	}
	t.Cleanup(restore)
	// Seconds_Behind_Master stays 0 on an idle delayed replica; the
	// heartbeat shows the delay.
	lab.WaitFor(t, "replica1 lagging by the heartbeat", 15*time.Second, func() bool {
		s := server(m, "replica1")
		return s.Lagging && s.ReplicaLag > time.Second
	})
	if server(m, "replica2").Lagging {
		t.Fatal("replica2 lagging too")
	}
	restore()
	lab.WaitFor(t, "replica1 back under the hysteresis mark", 20*time.Second, func() bool {
		s := server(m, "replica1")
		return !s.Lagging && s.ReplicaLag < 500*time.Millisecond
	})
}

func TestJudgeLagHysteresis(t *testing.T) {
	m := &Monitor{cfg: Config{MaxLag: 10 * time.Second, LagHysteresis: 0.8}}
	prev := &Snapshot{Servers: []Server{{Name: "r"}}}
	step := func(lag time.Duration) bool {
		s := Server{Name: "r", Role: RoleReplica, ReplicaLag: lag}
		m.judgeLag(&s, prev)
		prev = &Snapshot{Servers: []Server{s}}
		return s.Lagging
	}
	for _, c := range []struct {
		lag  time.Duration
		want bool
	}{{5 * time.Second, false}, {11 * time.Second, true}, {9 * time.Second, true}, {8 * time.Second, true}, {7 * time.Second, false}, {9 * time.Second, false}} {
		if got := step(c.lag); got != c.want {
			t.Fatalf("lag %v: lagging %v, want %v", c.lag, got, c.want)
		}
	}
}

func TestPrimaryIsTheOneReplicasFollow(t *testing.T) {
	servers := []Server{
		{Name: "a", Address: "127.0.0.1:1", Up: true},
		{Name: "b", Address: "127.0.0.1:2", Up: true},
		{Name: "c", Address: "127.0.0.1:3", Up: true, ReadOnly: true, Replicating: true, SourceAddress: "localhost:2"},
	}
	if got := primaryOf(servers); got != 1 {
		t.Fatalf("primary %d, want b (followed by c)", got)
	}
	servers[1].Up = false
	if got := primaryOf(servers); got != 0 {
		t.Fatalf("primary %d, want a once b is down", got)
	}
}

func TestGaleraRoles(t *testing.T) {
	nodes := func() []Server {
		return []Server{
			{Name: "g1", Up: true, GaleraState: 4, GaleraPrimary: true, GaleraIndex: 2},
			{Name: "g2", Up: true, GaleraState: 4, GaleraPrimary: true, GaleraIndex: 0},
			{Name: "g3", Up: true, GaleraState: 2, GaleraPrimary: true, GaleraIndex: 1}, // donor/joiner
		}
	}
	s := nodes()
	if w := galeraRoles(s, ""); w != 1 || s[0].Role != RoleReplica || s[0].Broken || !s[2].Broken {
		t.Fatalf("writer %d, roles %+v", w, s)
	}
	s = nodes()
	if w := galeraRoles(s, "g1"); w != 0 {
		t.Fatalf("preferred writer ignored: %d", w)
	}
	s = nodes()
	s[0].Up, s[1].GaleraPrimary = false, false
	if w := galeraRoles(s, "g1"); w != -1 {
		t.Fatalf("writer %d with no synced node in the primary component", w)
	}
}

// TestMonitorLoad measures the monitor's own queries per poll per server.
func TestMonitorLoad(t *testing.T) {
	questions := func() map[string]int64 { return topo.GlobalStatusAll(t, "Questions") }
	m := newMonitor(t, Config{Heartbeat: true, HeartbeatTable: "sluice.heartbeat", MaxLag: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.WaitPrimary(ctx); err != nil {
		t.Fatal(err)
	}
	before := questions()
	const polls = 20
	for range polls {
		m.Poll(ctx)
	}
	after := questions()
	for _, s := range topo.Servers() {
		// Each delta includes the one SHOW STATUS of this measurement.
		perPoll := float64(after[s.Name]-before[s.Name]-1) / polls
		t.Logf("%s: %.1f queries per poll", s.Name, perPoll)
		if perPoll > 5 {
			t.Fatalf("%s: %.1f monitor queries per poll", s.Name, perPoll)
		}
	}
}

// TestGaleraCluster runs the Galera monitor on a real three-node cluster.
func TestGaleraCluster(t *testing.T) {
	if err := lab.GaleraAvailable(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Galera is required on CI: %v", err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g, err := lab.StartGalera(ctx, lab.GaleraOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var cfg Config
	for _, n := range g.Nodes {
		cfg.Servers = append(cfg.Servers, ServerConfig{Name: n.Name, Address: n.Addr(), Weight: 1})
	}
	cfg.User, cfg.Password, cfg.Type = lab.MonitorUser, lab.MonitorPassword, "galera"
	cfg.Interval, cfg.Timeout = 100*time.Millisecond, 2*time.Second
	m := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mctx, mcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(mctx) }()
	defer func() { mcancel(); <-done }()

	lowest := func() string {
		best, idx := "", 1<<30
		for _, s := range m.Snapshot().Servers {
			if s.Up && !s.Broken && s.GaleraIndex < idx {
				best, idx = s.Name, s.GaleraIndex
			}
		}
		return best
	}
	readers := func() int {
		n := 0
		for _, s := range m.Snapshot().Servers {
			if s.Role == RoleReplica && !s.Broken {
				n++
			}
		}
		return n
	}
	lab.WaitFor(t, "a writer and two readers", 20*time.Second, func() bool {
		p, ok := m.Snapshot().PrimaryServer()
		return ok && p.Name == lowest() && readers() == 2
	})
	writer, _ := m.Snapshot().PrimaryServer()
	t.Logf("writer %s (lowest wsrep_local_index)", writer.Name)
	// Kill the writer: another synced node takes over, by the same rule.
	for _, n := range g.Nodes {
		if n.Name == writer.Name {
			if err := n.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	lab.WaitFor(t, "a new writer", 30*time.Second, func() bool {
		p, ok := m.Snapshot().PrimaryServer()
		return ok && p.Name != writer.Name && readers() == 1
	})
}

// A standalone server holding a transaction the primary never had (an old
// primary that committed what no replica received) is not rejoined: the
// monitor says why and what to do, once, and leaves the server alone.
func TestRejoinRefusesDivergedServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r2 := topo.Replicas[1]
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Forget the divergent transactions (RESET MASTER empties the
		// binlog) and follow the primary again from gtid_slave_pos.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, q := range []string{"DROP DATABASE IF EXISTS diverged", "RESET MASTER"} {
			if err := r2.Exec(ctx, q); err != nil {
				t.Error(err)
			}
		}
		if err := topo.PointReplica(ctx, r2, topo.Primary); err != nil {
			t.Error(err)
		}
		if err := r2.Exec(ctx, "SET GLOBAL read_only = 1"); err != nil {
			t.Error(err)
		}
		if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
			t.Error(err)
		}
	})
	// The divergent write happens while replica2 still has a source, so
	// the monitor never sees it standalone without it.
	for _, q := range []string{"STOP SLAVE", "SET GLOBAL read_only = 0", "CREATE DATABASE diverged", "RESET SLAVE ALL"} {
		if err := r2.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	events := make(chan Event, 16)
	m := startMonitor(t, Config{Failover: FailoverConfig{AutoRejoin: true, ReplicationUser: Credentials{User: lab.ReplUser, Password: lab.ReplPassword}}},
		func(e Event) {
			if e.Kind == "rejoin_refused" || e.Kind == "rejoin" {
				events <- e
			}
		})
	var refused Event
	select {
	case refused = <-events:
	case <-ctx.Done():
		t.Fatal("no rejoin event for the diverged replica2")
	}
	if refused.Kind != "rejoin_refused" || refused.Server != r2.Name || !strings.Contains(refused.Reason, fmt.Sprintf("0-%d-", r2.ServerID)) ||
		!strings.Contains(refused.Reason, "rebuild it from a backup") {
		t.Fatalf("event %+v; want rejoin_refused naming replica2's own transaction and the fix", refused)
	}
	// Reported once, and replica2 left standalone, through three more polls.
	for range 3 {
		select {
		case <-m.Changed():
		case <-ctx.Done():
			t.Fatal("the monitor stopped polling")
		}
	}
	if len(events) > 0 {
		t.Fatalf("another event: %+v", <-events)
	}
	db, err := r2.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if rows.Next() {
		t.Fatal("replica2 was pointed at the primary although it diverged")
	}
}

// Failover promotes the replica that received the most, applied or not: a
// replica whose SQL thread is behind but whose relay log holds the last
// commit beats one that applied less and received no more.
func TestFailoverCandidateByReceivedGTID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r1, r2 := topo.Replicas[0], topo.Replicas[1]
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, r := range topo.Replicas {
			if err := r.Exec(ctx, "START SLAVE"); err != nil {
				t.Error(err)
			}
		}
		if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
			t.Error(err)
		}
	})
	primaryPos := func() string {
		db, err := topo.Primary.RootDB()
		if err != nil {
			t.Fatal(err)
		}
		var pos string
		if err := db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
			t.Fatal(err)
		}
		return pos
	}
	// replica1 receives but applies nothing; replica2 applies the first
	// write, then stops.
	if err := r1.Exec(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	if err := topo.Primary.Exec(ctx, "CREATE DATABASE IF NOT EXISTS candidate"); err != nil {
		t.Fatal(err)
	}
	if err := r2.Exec(ctx, "SELECT MASTER_GTID_WAIT(?, 20)", primaryPos()); err != nil {
		t.Fatal(err)
	}
	if err := r2.Exec(ctx, "STOP SLAVE"); err != nil {
		t.Fatal(err)
	}
	if err := topo.Primary.Exec(ctx, "DROP DATABASE candidate"); err != nil {
		t.Fatal(err)
	}
	last := primaryPos()
	m := newMonitor(t, Config{})
	lab.WaitFor(t, "replica1 to have received "+last, 20*time.Second, func() bool {
		return server(m, r1.Name).GTIDReceived == last
	})
	snap := m.Snapshot()
	s1, s2 := server(m, r1.Name), server(m, r2.Name)
	if gtidSeq(s2.GTIDPosition) <= gtidSeq(s1.GTIDPosition) {
		t.Fatalf("setup: replica2 applied %s, replica1 %s; want replica2 ahead by applied position", s2.GTIDPosition, s1.GTIDPosition)
	}
	if c := mostAdvancedReplica(snap); c == nil || c.Name != r1.Name {
		t.Fatalf("candidate %+v; want replica1, which received %s (replica2: %s)", c, s1.GTIDReceived, s2.GTIDReceived)
	}
}
