// Package router decides where each statement goes, from the monitor's
// latest snapshot of the servers.
package router

import (
	"errors"

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

// Router chooses backends for sessions.
type Router struct {
	topo Topology
}

// New builds a router over topo.
func New(topo Topology) *Router { return &Router{topo: topo} }

// Primary is where writes go.
func (r *Router) Primary() (Target, error) {
	p, ok := r.topo.Snapshot().PrimaryServer()
	if !ok {
		return Target{}, ErrNoPrimary
	}
	return Target{Server: p.Name, Address: p.Address, Reason: "primary"}, nil
}

// ServerVersion is the primary's version string, for the client handshake;
// empty until the monitor has seen it.
func (r *Router) ServerVersion() string {
	if p, ok := r.topo.Snapshot().PrimaryServer(); ok {
		return p.Version
	}
	return ""
}
