package router

import (
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/monitor"
)

type fixedTopology struct{ snap *monitor.Snapshot }

func (f fixedTopology) Snapshot() *monitor.Snapshot { return f.snap }

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
		tg, ok := r.Replica(0, nil)
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
		if tg, _ := r.Replica(2*time.Second, nil); tg.Server != "fresh" {
			t.Fatalf("max_lag=2s chose %s", tg.Server)
		}
	}
	if _, ok := r.Replica(100*time.Millisecond, nil); ok {
		t.Fatal("max_lag=100ms found a replica; reads should go to the primary")
	}
	// Weighted round robin.
	snap.Servers[1].Weight, snap.Servers[2].Weight = 3, 1
	r.SetConfig(Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second, Balance: "round_robin"})
	counts := map[string]int{}
	for range 400 {
		tg, _ := r.Replica(0, nil)
		counts[tg.Server]++
	}
	if counts["fresh"] != 300 || counts["behind"] != 100 {
		t.Fatalf("weighted round robin: %v", counts)
	}
}
