package router

import "time"

// Policy is a router type's routing policy: given what a session knows of
// itself and of one statement, where the statement goes and why. A policy is
// a pure function of its inputs; the proxy carries its decisions out
// (opening connections, falling back when a replica is unusable).
type Policy interface {
	// Route decides where a statement of class cl goes. Its arguments are
	// values, so that calling it through the interface allocates nothing.
	Route(sit Situation, st Statement, cl *Class) Decision
	// Classifies reports whether statements must be classified to be
	// routed; without filters, a policy that does not classify lets the
	// proxy skip parsing.
	Classifies() bool
	// Movable reports whether a session's connections may be replaced
	// while it runs: following a moved primary, reconnecting after a lost
	// connection, retrying a read elsewhere. A policy that binds each
	// session for its life to the one connection Router.ConnTarget chose
	// at login is not.
	Movable() bool
}

// NewPolicy is the policy of router type typ (readwritesplit when empty).
func NewPolicy(typ string) Policy {
	if typ == TypeReadConnRoute {
		return ReadConnRoute{}
	}
	return ReadWriteSplit{}
}

// Router types.
const (
	TypeReadWriteSplit = "readwritesplit"
	TypeReadConnRoute  = "readconnroute"
)

// Situation is what a session knows of itself when it routes a statement.
type Situation struct {
	// InReadOnlyTransaction: a START TRANSACTION READ ONLY holds a replica.
	InReadOnlyTransaction bool
	// InTransaction: the primary's status flags say a transaction is open
	// or autocommit is off.
	InTransaction bool
	// Pinned: every statement of the session goes to the primary from now on.
	Pinned bool
	// UsesTemporary: the statement names one of the session's temporary
	// tables, which live on the primary.
	UsesTemporary bool
	// HasLast: the session knows where its previous statement ran.
	HasLast bool
	// ServerHintFailed: a route=server hint named a server the session
	// cannot use now; route as if there were no such hint.
	ServerHintFailed bool
}

// Destination is the kind of connection a decision sends a statement to.
type Destination uint8

// Destinations.
const (
	// ToPrimary: the session's primary connection (with readconnroute,
	// the session's one connection).
	ToPrimary Destination = iota
	// ToReplica: a usable replica within the decision's MaxLag; the primary
	// when there is none (ReasonNoUsableReplica), or when a causal read
	// cannot wait there (ReasonCausalFellBack).
	ToReplica
	// ToServer: the server named by Decision.Server (a hint); when it
	// cannot be used, the session routes again with ServerHintFailed.
	ToServer
	// ToLast: where the previous statement ran.
	ToLast
	// ToTransaction: the replica holding the read-only transaction.
	ToTransaction
)

// Decision is where one statement goes and why.
type Decision struct {
	To Destination
	// Server names the server of ToServer.
	Server string
	// MaxLag narrows ToReplica to replicas at most this far behind; 0
	// means router.max_replication_lag.
	MaxLag time.Duration
	Reason Reason
	// Pin, when set, pins the session to the primary from now on, for
	// this reason.
	Pin string
}

// Reason says why a statement goes where it goes. Its text is the audit
// record's route label after "primary: " or "replica: ".
type Reason uint8

// Reasons.
const (
	// ReasonClass: what the statement is; Class.Reason says it in words.
	ReasonClass Reason = iota
	// ReasonPinned: the session is pinned; its pin says why.
	ReasonPinned
	ReasonTransaction
	ReasonReadOnlyTransaction
	ReasonHint
	ReasonTemporaryTable
	ReasonNoUsableReplica
	ReasonCausalFellBack
	// ReasonRetried: the connection it was sent on was lost before it
	// answered, and it ran again.
	ReasonRetried
	// ReasonReplayed: its transaction was lost with its connection and
	// replayed on another.
	ReasonReplayed
	// ReasonDeadlockReplayed: it was a deadlock's victim; its transaction
	// was replayed and it ran again.
	ReasonDeadlockReplayed
	// ReasonConnection: readconnroute's one connection per session.
	ReasonConnection
	// ReasonLongData: a prepared statement's long data went to the primary.
	ReasonLongData
	// ReasonPrepare: COM_STMT_PREPARE runs on the primary.
	ReasonPrepare
)

var reasonText = [...]string{
	ReasonTransaction:         "transaction",
	ReasonReadOnlyTransaction: "read-only transaction",
	ReasonHint:                "hint",
	ReasonTemporaryTable:      "temporary table",
	ReasonNoUsableReplica:     "no usable replica",
	ReasonCausalFellBack:      "causal read fell back",
	ReasonRetried:             "retried after a lost connection",
	ReasonReplayed:            "transaction replayed on another server",
	ReasonDeadlockReplayed:    "transaction replayed after a deadlock",
	ReasonConnection:          "connection",
	ReasonLongData:            "long data",
	ReasonPrepare:             "prepare",
}

// Text is the reason in words; detail is what ReasonClass (the class's
// reason) and ReasonPinned (the pin's reason) stand for.
func (r Reason) Text(detail string) string {
	if r == ReasonClass || r == ReasonPinned || int(r) >= len(reasonText) {
		return detail
	}
	return reasonText[r]
}

// Label is the audit record's route field: where, and why.
func Label(toPrimary bool, reason string) string {
	if toPrimary {
		return "primary: " + reason
	}
	return "replica: " + reason
}
