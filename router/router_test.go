package router

import (
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/monitor"
)

type fixedTopology struct{ snap *monitor.Snapshot }

func (f fixedTopology) Snapshot() *monitor.Snapshot { return f.snap }
func (f fixedTopology) Changed() <-chan struct{}    { return nil }

func TestReplicaHonoursLagAndHealth(t *testing.T) {
	snap := &monitor.Snapshot{Primary: 0, Servers: []monitor.Server{
		{Name: "p", Up: true, Role: monitor.RolePrimary, ReplicaLag: -1, Weight: 1},
		{Name: "fresh", Up: true, Role: monitor.RoleReplica, ReplicaLag: 500 * time.Millisecond, Weight: 1},
		{Name: "behind", Up: true, Role: monitor.RoleReplica, ReplicaLag: 5 * time.Second, Weight: 1},
		{Name: "broken", Up: true, Role: monitor.RoleReplica, Broken: true, Weight: 1},
		{Name: "lagging", Up: true, Role: monitor.RoleReplica, Lagging: true, ReplicaLag: time.Second, Weight: 1},
	}}
	r := New(fixedTopology{snap}, Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second})
	seen := map[string]bool{}
	for range 200 {
		tg, ok := r.Replica(0, nil, "")
		if !ok {
			t.Fatal("no replica")
		}
		seen[tg.Server] = true
	}
	if !seen["fresh"] || !seen["behind"] || seen["broken"] || seen["lagging"] || seen["p"] {
		t.Fatalf("replicas chosen: %v", seen)
	}
	// A max_lag hint narrows the choice.
	for range 50 {
		if tg, _ := r.Replica(2*time.Second, nil, ""); tg.Server != "fresh" {
			t.Fatalf("max_lag=2s chose %s", tg.Server)
		}
	}
	if _, ok := r.Replica(100*time.Millisecond, nil, ""); ok {
		t.Fatal("max_lag=100ms found a replica; reads should go to the primary")
	}
	// Weighted round robin.
	snap.Servers[1].Weight, snap.Servers[2].Weight = 3, 1
	r.SetConfig(Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second, Balance: "round_robin"})
	counts := map[string]int{}
	for range 400 {
		tg, _ := r.Replica(0, nil, "")
		counts[tg.Server]++
	}
	if counts["fresh"] != 300 || counts["behind"] != 100 {
		t.Fatalf("weighted round robin: %v", counts)
	}
}

func TestReplicaKeepsTheSessionsReplica(t *testing.T) {
	snap := &monitor.Snapshot{Primary: 0, Servers: []monitor.Server{
		{Name: "p", Up: true, Role: monitor.RolePrimary, ReplicaLag: -1, Weight: 1},
		{Name: "r1", Up: true, Role: monitor.RoleReplica, Weight: 1},
		{Name: "r2", Up: true, Role: monitor.RoleReplica, Weight: 1},
	}}
	r := New(fixedTopology{snap}, Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second})
	// Idle replicas: new sessions go to each in turn.
	a, _ := r.Replica(0, nil, "")
	b, _ := r.Replica(0, nil, "")
	if a.Server == b.Server {
		t.Fatalf("two new sessions on idle replicas both went to %s", a.Server)
	}
	// A session stays on its replica while it is at most one query busier.
	for range 20 {
		if tg, _ := r.Replica(0, nil, "r2"); tg.Server != "r2" {
			t.Fatalf("idle: session of r2 moved to %s", tg.Server)
		}
	}
	r.Started("r2")
	if tg, _ := r.Replica(0, nil, "r2"); tg.Server != "r2" {
		t.Fatalf("one query busier: session of r2 moved to %s", tg.Server)
	}
	r.Started("r2")
	if tg, _ := r.Replica(0, nil, "r2"); tg.Server != "r1" {
		t.Fatalf("two queries busier: session of r2 stayed on %s", tg.Server)
	}
	// Weight scales the margin: r2 of weight 4 serves four times as many.
	snap.Servers[2].Weight = 4
	r.Started("r2")
	r.Started("r2") // 4 in flight on r2 (score 5/4), none on r1 (score 1)
	if tg, _ := r.Replica(0, nil, "r2"); tg.Server != "r2" {
		t.Fatalf("weighted: session of r2 moved to %s", tg.Server)
	}
	for range 4 {
		r.Finished("r2")
	}
	// A preferred replica that is no longer usable is left.
	snap.Servers[2].Maintenance = true
	if tg, _ := r.Replica(0, nil, "r2"); tg.Server != "r1" {
		t.Fatalf("maintenance: session of r2 stayed on %s", tg.Server)
	}
	if tg, _ := r.Replica(0, func(name string) bool { return name == "r1" }, "r1"); tg.Server != "" {
		t.Fatalf("every replica skipped or drained, got %s", tg.Server)
	}
}

func TestPrimaryReads(t *testing.T) {
	snap := &monitor.Snapshot{Primary: 0, Servers: []monitor.Server{
		{Name: "p", Up: true, Role: monitor.RolePrimary, ReplicaLag: -1, Weight: 1},
		{Name: "r1", Up: true, Role: monitor.RoleReplica, Weight: 1},
		{Name: "r2", Up: true, Role: monitor.RoleReplica, Broken: true, Weight: 1},
	}}
	for _, primaryReads := range []bool{false, true} {
		r := New(fixedTopology{snap}, Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second,
			Balance: "round_robin", PrimaryReads: primaryReads})
		seen := map[string]int{}
		for range 100 {
			tg, ok := r.Replica(0, nil, "")
			if !ok {
				t.Fatal("no server for a read")
			}
			seen[tg.Server]++
		}
		if seen["r2"] != 0 || seen["r1"] == 0 || (seen["p"] != 0) != primaryReads {
			t.Fatalf("primary_reads %v: reads went to %v", primaryReads, seen)
		}
	}
	// With the replicas unusable, primary_reads still finds the primary.
	r := New(fixedTopology{snap}, Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second, PrimaryReads: true})
	if tg, ok := r.Replica(0, func(name string) bool { return name == "r1" }, ""); !ok || tg.Server != "p" {
		t.Fatalf("only the primary readable: %+v %v", tg, ok)
	}
}
