package router

import (
	"strings"
	"time"
)

// ReadWriteSplit sends writes to the primary and spreads reads over the
// replicas (MaxScale's readwritesplit): transactions, pinned sessions and
// anything touching the session's temporary tables stay on the primary.
type ReadWriteSplit struct{}

func (ReadWriteSplit) Classifies() bool { return true }
func (ReadWriteSplit) Movable() bool    { return true }

// Route decides where a statement goes, in order: the read-only
// transaction's replica, the primary for a transaction or a pinned session,
// then the statement's hints and class.
func (ReadWriteSplit) Route(sit Situation, st Statement, cl *Class) Decision {
	switch {
	case sit.InReadOnlyTransaction:
		return Decision{To: ToTransaction, Reason: ReasonReadOnlyTransaction}
	case sit.InTransaction:
		return Decision{To: ToPrimary, Reason: ReasonTransaction}
	case sit.Pinned:
		return Decision{To: ToPrimary, Reason: ReasonPinned}
	case st.Multi && mayChangeSession(st.Fingerprint):
		// Its statements are not classified one by one: keep everything
		// where its effects are.
		return Decision{To: ToPrimary, Reason: ReasonPinned, Pin: "multi-statement changed session state"}
	}
	switch st.Hint.Route {
	case "primary":
		return Decision{To: ToPrimary, Reason: ReasonHint}
	case "server":
		if !sit.ServerHintFailed {
			return Decision{To: ToServer, Server: st.Hint.Server, Reason: ReasonHint}
		}
	}
	route := cl.Route
	if st.Hint.Route == "replica" && route == RoutePrimary && st.Keyword == "SELECT" && !cl.Locks {
		// The application vouches for this read; a hint never sends a
		// write or a lock to a replica.
		route = RouteReplica
	}
	switch route {
	case RouteReplica:
		if sit.UsesTemporary {
			return Decision{To: ToPrimary, Reason: ReasonTemporaryTable}
		}
		d := Decision{To: ToReplica, Reason: ReasonClass}
		if st.Hint.MaxLag != "" {
			d.MaxLag, _ = time.ParseDuration(st.Hint.MaxLag)
		}
		return d
	case RouteLast:
		if sit.HasLast {
			return Decision{To: ToLast, Reason: ReasonClass}
		}
	}
	return Decision{To: ToPrimary, Reason: ReasonClass}
}

// mayChangeSession is a conservative test of a multi-statement's text.
func mayChangeSession(fingerprint string) bool {
	up := strings.ToUpper(fingerprint)
	for _, kw := range []string{"SET", "USE", "TEMPORARY", "PREPARE", "INTO @", ":="} {
		if strings.Contains(up, kw) {
			return true
		}
	}
	return false
}
