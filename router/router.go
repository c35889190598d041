// Package router decides where each statement goes, from the monitor's
// latest snapshot of the servers: the primary, or the replica with the
// fewest outstanding queries among those recent enough.
package router

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-proxy/sluice/monitor"
)

// Target is a server a statement is sent to, and why.
type Target struct {
	Server  string
	Address string
	Reason  string
}

// ErrNoPrimary means no writable server is known now.
var ErrNoPrimary = errors.New("no primary server is available")

// Topology is what the router reads: the monitor's latest snapshot.
type Topology interface {
	Snapshot() *monitor.Snapshot
}

// Config is the router section.
type Config struct {
	// Type is readwritesplit or readconnroute.
	Type string
	// MaxReplicationLag: replicas further behind get no reads.
	MaxReplicationLag time.Duration
	// Balance is least_outstanding (default) or round_robin; both honour weights.
	Balance string
	// Target is readconnroute's role: primary, replica or any.
	Target string
	// CausalReads makes a read after a write wait on the replica for that
	// write's GTID, up to CausalReadsTimeout, then fall back to the primary.
	CausalReads        bool
	CausalReadsTimeout time.Duration
}

// Router chooses backends for sessions. It is safe for concurrent use.
type Router struct {
	topo Topology
	cfg  atomic.Pointer[Config]
	rr   atomic.Uint64
	// outstanding counts queries in flight per server name.
	outstanding sync.Map // string -> *atomic.Int64
}

// New builds a router over topo.
func New(topo Topology, cfg Config) *Router {
	r := &Router{topo: topo}
	r.cfg.Store(&cfg)
	return r
}

// SetConfig applies a reloaded router section.
func (r *Router) SetConfig(cfg Config) { r.cfg.Store(&cfg) }

// Config is the router section in force.
func (r *Router) Config() Config { return *r.cfg.Load() }

// Primary is where writes go.
func (r *Router) Primary() (Target, error) {
	p, ok := r.topo.Snapshot().PrimaryServer()
	if !ok {
		return Target{}, ErrNoPrimary
	}
	return Target{Server: p.Name, Address: p.Address, Reason: "primary"}, nil
}

// Server finds a server by name, if it is up.
func (r *Router) Server(name string) (Target, bool) {
	for _, s := range r.topo.Snapshot().Servers {
		if s.Name == name && s.Up && !s.Maintenance {
			return Target{Server: s.Name, Address: s.Address, Reason: "hint"}, true
		}
	}
	return Target{}, false
}

// usable reports whether a replica may serve reads with at most maxLag lag.
func usable(s *monitor.Server, maxLag time.Duration) bool {
	return s.Up && s.Role == monitor.RoleReplica && !s.Broken && !s.Lagging && !s.Maintenance &&
		s.ReplicaLag >= 0 && s.ReplicaLag <= maxLag
}

// Replica picks a replica for a read: among the usable ones not skipped,
// the one with the fewest outstanding queries per unit of weight (or the
// next in weighted round robin). maxLag 0 means the configured limit.
func (r *Router) Replica(maxLag time.Duration, skip func(name string) bool) (Target, bool) {
	cfg := r.cfg.Load()
	if maxLag <= 0 || maxLag > cfg.MaxReplicationLag {
		maxLag = cfg.MaxReplicationLag
	}
	snap := r.topo.Snapshot()
	best, bestScore := -1, 0.0
	var candidates [16]int
	n := 0
	// Start at a random offset, so ties (idle replicas) share the reads.
	start := rand.IntN(max(len(snap.Servers), 1))
	for k := range snap.Servers {
		i := (start + k) % len(snap.Servers)
		s := &snap.Servers[i]
		if !usable(s, maxLag) || (skip != nil && skip(s.Name)) {
			continue
		}
		if n < len(candidates) {
			candidates[n] = i
			n++
		}
		score := float64(r.counter(s.Name).Load()+1) / float64(max(s.Weight, 1))
		if best < 0 || score < bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return Target{}, false
	}
	if cfg.Balance == "round_robin" {
		// Weighted, over the candidates in configuration order (the scan
		// above starts at a random one): a server of weight w is chosen w
		// times as often.
		slices.Sort(candidates[:n])
		total := 0
		for _, i := range candidates[:n] {
			total += max(snap.Servers[i].Weight, 1)
		}
		pick := int(r.rr.Add(1) % uint64(total))
		for _, i := range candidates[:n] {
			if pick -= max(snap.Servers[i].Weight, 1); pick < 0 {
				best = i
				break
			}
		}
	}
	s := snap.Servers[best]
	return Target{Server: s.Name, Address: s.Address, Reason: "replica"}, true
}

// ConnTarget is readconnroute's choice for a new session.
func (r *Router) ConnTarget() (Target, error) {
	switch r.cfg.Load().Target {
	case "replica":
		if t, ok := r.Replica(0, nil); ok {
			return t, nil
		}
		return Target{}, errors.New("no usable replica is available")
	case "any":
		if t, ok := r.Replica(0, nil); ok {
			return t, nil
		}
	}
	return r.Primary()
}

func (r *Router) counter(name string) *atomic.Int64 {
	if c, ok := r.outstanding.Load(name); ok {
		return c.(*atomic.Int64)
	}
	c, _ := r.outstanding.LoadOrStore(name, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// Started and Finished bracket a query on a server, for balancing.
func (r *Router) Started(server string)  { r.counter(server).Add(1) }
func (r *Router) Finished(server string) { r.counter(server).Add(-1) }

// ServerVersion is the primary's version string, for the client handshake;
// empty until the monitor has seen it.
func (r *Router) ServerVersion() string {
	if p, ok := r.topo.Snapshot().PrimaryServer(); ok {
		return p.Version
	}
	return ""
}
