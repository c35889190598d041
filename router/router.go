// Package router decides where each statement goes, from the monitor's
// latest snapshot of the servers: the primary, or the replica with the
// fewest outstanding queries among those recent enough.
package router

import (
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-proxy/sluice/monitor"
)

// Target is a server a statement is sent to.
type Target struct {
	Server  string
	Address string
}

// ErrNoPrimary means no writable server is known now.
var ErrNoPrimary = errors.New("no primary server is available")

// Topology is what the router reads: the monitor's latest snapshot, and
// when the next one is out.
type Topology interface {
	Snapshot() *monitor.Snapshot
	Changed() <-chan struct{}
}

// Router chooses backends for sessions. It is safe for concurrent use.
type Router struct {
	topo   Topology
	cfg    atomic.Pointer[Config]
	policy atomic.Pointer[Policy]
	rr     atomic.Uint64
	// outstanding counts queries in flight per server name. Copied on
	// write (servers are few and rarely added): a read is a plain map
	// lookup, three per query, where sync.Map hashed an interface.
	outstanding atomic.Pointer[map[string]*atomic.Int64]
	addMu       sync.Mutex
}

// New builds a router over topo.
func New(topo Topology, cfg Config) *Router {
	r := &Router{topo: topo}
	r.SetConfig(cfg)
	// Start the rotation anywhere: several instances on one port
	// (listen_reuseport) would otherwise all send their first sessions to
	// the first replica.
	r.rr.Store(rand.Uint64())
	return r
}

// SetConfig applies a reloaded router section.
func (r *Router) SetConfig(cfg Config) {
	p := NewPolicy(cfg.Type)
	r.policy.Store(&p)
	r.cfg.Store(&cfg)
}

// Config is the router section in force.
func (r *Router) Config() Config { return *r.cfg.Load() }

// Policy is the routing policy of the router type in force.
func (r *Router) Policy() Policy { return *r.policy.Load() }

// Primary is where writes go.
func (r *Router) Primary() (Target, error) {
	p, ok := r.topo.Snapshot().PrimaryServer()
	if !ok {
		return Target{}, ErrNoPrimary
	}
	return Target{Server: p.Name, Address: p.Address}, nil
}

// Changed is closed when the monitor next publishes what it saw of the
// servers: a session waiting for a primary tries again then.
func (r *Router) Changed() <-chan struct{} { return r.topo.Changed() }

// Server finds a server by name, if it is up.
func (r *Router) Server(name string) (Target, bool) {
	for _, s := range r.topo.Snapshot().Servers {
		if s.Name == name && s.Up && !s.Maintenance {
			return Target{Server: s.Name, Address: s.Address}, true
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
//
// With least_outstanding, prefer (the replica the session read from last)
// keeps the read while it is at most one query per unit of weight busier
// than the least busy: a session then reads through one replica connection
// instead of alternating between several, and on the server one warm
// thread answers it. Ties (idle replicas) go to each in turn, so new
// sessions spread over the replicas.
func (r *Router) Replica(maxLag time.Duration, skip func(name string) bool, prefer string) (Target, bool) {
	cfg := r.cfg.Load()
	if maxLag <= 0 || maxLag > cfg.MaxReplicationLag {
		maxLag = cfg.MaxReplicationLag
	}
	snap := r.topo.Snapshot()
	// Usable replicas in configuration order, with their scores.
	var candidates [16]int
	var scores [16]float64
	n := 0
	bestScore := math.Inf(1)
	preferred := -1
	for i := range snap.Servers {
		s := &snap.Servers[i]
		readable := usable(s, maxLag) || (cfg.PrimaryReads && i == snap.Primary && !s.Maintenance)
		if n == len(candidates) || !readable || (skip != nil && skip(s.Name)) {
			continue
		}
		candidates[n] = i
		scores[n] = float64(r.counter(s.Name).Load()+1) / float64(max(s.Weight, 1))
		bestScore = min(bestScore, scores[n])
		if s.Name == prefer {
			preferred = n
		}
		n++
	}
	if n == 0 {
		return Target{}, false
	}
	var pick int
	switch {
	case cfg.Balance == "round_robin":
		// Weighted: a server of weight w is chosen w times as often.
		total := 0
		for _, i := range candidates[:n] {
			total += max(snap.Servers[i].Weight, 1)
		}
		at := int(r.rr.Add(1) % uint64(total))
		for k, i := range candidates[:n] {
			if at -= max(snap.Servers[i].Weight, 1); at < 0 {
				pick = k
				break
			}
		}
	case preferred >= 0 && scores[preferred] <= bestScore+1/float64(max(snap.Servers[candidates[preferred]].Weight, 1)):
		pick = preferred
	default:
		var ties [16]int
		t := 0
		for k := range n {
			if scores[k] == bestScore {
				ties[t] = k
				t++
			}
		}
		pick = ties[r.rr.Add(1)%uint64(t)]
	}
	s := snap.Servers[candidates[pick]]
	return Target{Server: s.Name, Address: s.Address}, true
}

// ConnTarget is readconnroute's choice for a new session.
func (r *Router) ConnTarget() (Target, error) {
	switch r.cfg.Load().Target {
	case "replica":
		if t, ok := r.Replica(0, nil, ""); ok {
			return t, nil
		}
		return Target{}, errors.New("no usable replica is available")
	case "any":
		if t, ok := r.Replica(0, nil, ""); ok {
			return t, nil
		}
	}
	return r.Primary()
}

func (r *Router) counter(name string) *atomic.Int64 {
	if m := r.outstanding.Load(); m != nil {
		if c, ok := (*m)[name]; ok {
			return c
		}
	}
	r.addMu.Lock()
	defer r.addMu.Unlock()
	m := map[string]*atomic.Int64{}
	if old := r.outstanding.Load(); old != nil {
		if c, ok := (*old)[name]; ok {
			return c
		}
		m = maps.Clone(*old)
	}
	c := new(atomic.Int64)
	m[name] = c
	r.outstanding.Store(&m)
	return c
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
