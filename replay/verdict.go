package replay

import (
	"strings"

	"github.com/sluice-proxy/sluice/router"
)

// Why a step is not replayed. Reasons for one statement extend to the
// whole transaction it belongs to: transactions are replayed whole or not
// at all.
const (
	ReasonBeforeWindow = "transaction began before the window"
	ReasonAfterWindow  = "transaction ends after the window"
	ReasonApplied      = "committed at or before --from-gtid (the target has it)"
	ReasonBeforeGTID   = "ran before --from-gtid"
	ReasonTruncated    = "statement truncated in the trail (raise genlog.max_query_bytes)"
	ReasonRedacted     = "values withheld in the trail (genlog.redact*)"
	ReasonNoParams     = "parameters not in the trail (genlog.params off, or long data)"
	ReasonMulti        = "multi-statement query (not replayed)"
	ReasonFailed       = "statement failed in the capture and the failure cannot be reproduced (no text)"
	ReasonROWrite      = "read-only: may change data (write)"
	ReasonROConfig     = "read-only: changes the server's configuration"
	ReasonROUnknown    = "read-only: cannot tell whether it writes"
	ReasonROLocks      = "read-only: locking read or SELECT INTO"
	reasonCommand      = "command not replayed: "
)

// Statement is what the plan needs to know of a statement's text.
type Statement struct {
	Class *router.Class
	Multi bool
	// Markers counts the ? parameter markers.
	Markers int
}

// Classifier tells what a statement is: router's lexer and classifier.
// Not safe for concurrent use.
type Classifier struct {
	lexer router.Lexer
	cl    *router.Classifier
	spans []router.Span
}

// NewClassifier makes a classifier.
func NewClassifier() *Classifier { return &Classifier{cl: router.NewClassifier(10000, nil)} }

// Classify reads query.
func (c *Classifier) Classify(query string) Statement {
	var st router.Statement
	st, c.spans = c.lexer.Literals(query, c.spans[:0])
	markers := 0
	for _, s := range c.spans {
		if s.Marker {
			markers++
		}
	}
	class, _ := c.cl.Classify(&st, query)
	return Statement{Class: class, Multi: st.Multi, Markers: markers}
}

// stepVerdict says why one recorded command cannot be replayed, or "".
func stepVerdict(r *Record, st Statement, readOnly bool) string {
	switch r.Command {
	case "COM_QUERY", "COM_STMT_PREPARE", "COM_STMT_EXECUTE":
	case "COM_INIT_DB", "COM_PING", "COM_STMT_CLOSE":
		return ""
	default:
		return reasonCommand + r.Command
	}
	switch {
	case r.QueryTruncated:
		return ReasonTruncated
	case len(r.Redacted) > 0:
		return ReasonRedacted
	case r.Query == "":
		return ReasonFailed
	case st.Multi:
		return ReasonMulti
	}
	if r.Command == "COM_STMT_EXECUTE" {
		if _, ok := r.args(); !ok || len(r.Params) != st.Markers {
			return ReasonNoParams
		}
	}
	if readOnly {
		// A write is not prepared either: a read-only session may refuse it.
		return readOnlyVerdict(st.Class)
	}
	return ""
}

// readOnlyVerdict says why a statement may not run under --read-only, or
// "" when it cannot change data. Transaction boundaries pass (COMMIT is
// classified a write); SET GLOBAL, SQL-level PREPARE/EXECUTE, DO and what
// the parser cannot read do not.
func readOnlyVerdict(cl *router.Class) string {
	switch {
	case cl == nil:
		return ReasonROUnknown
	case cl.Locks:
		return ReasonROLocks
	case cl.IsWrite():
		if len(cl.Kinds) == 1 && cl.Kinds[0] == router.KindTransaction {
			return ""
		}
		return ReasonROWrite
	case cl.Reason == "global variable":
		return ReasonROConfig
	case cl.Reason == "SQL prepared statement" || cl.Reason == "do" || cl.Reason == "unparsed" || cl.Reason == "multi-statement":
		return ReasonROUnknown
	}
	for _, k := range cl.Kinds {
		if k == router.KindUnknown || k == router.KindCall || k == router.KindLoad || k == router.KindDDL || k == router.KindDCL {
			return ReasonROWrite
		}
	}
	return ""
}

// begins reports whether a statement starts a transaction.
func begins(r *Record, st Statement) bool {
	if st.Class != nil && st.Class.Begin {
		return true
	}
	// SET autocommit=0 leaves the next statement in a transaction.
	return strings.Contains(strings.ToLower(r.Query), "autocommit")
}

// isRead: a plain read (no lock, no write), whose snapshot is taken when
// it starts.
func isRead(st Statement) bool {
	return st.Class != nil && !st.Class.Locks && !st.Class.IsWrite() && len(st.Class.Kinds) == 1 && st.Class.Kinds[0] == router.KindSelect
}

// isCommit: COMMIT (the class of ROLLBACK is the same; it is harmless to
// order it too).
func isCommit(st Statement) bool {
	return st.Class != nil && st.Class.IsWrite() && len(st.Class.Kinds) == 1 && st.Class.Kinds[0] == router.KindTransaction
}
