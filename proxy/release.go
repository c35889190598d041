package proxy

// This file decides when a session's server connections go back to the
// pool (pool.go). The decision is a pure function of what the session holds,
// tested as a table (TestDecideRelease); the processor gathers the facts and
// acts on the answer.

// holdFacts are what a session has that lives only on its connections, and
// where it stands in the pool's timing.
type holdFacts struct {
	mode string // pool.mode
	// idle: pool.idle_time passed without a command.
	idle bool
	// transaction: a transaction is open, or autocommit is off (the next
	// statement opens one).
	transaction bool
	// temporaryTables: the session created temporary tables it has not
	// dropped.
	temporaryTables bool
	// tableLocks: LOCK TABLES without UNLOCK TABLES since.
	tableLocks bool
	// kept names a statement whose effect stays on the connection for the
	// rest of the session (GET_LOCK, PREPARE ... FROM, HANDLER, XA): Sluice
	// cannot carry it to another connection.
	kept string
	// cursor: a prepared statement's cursor is open; longData: long data
	// was sent for an execute still to come.
	cursor, longData bool
	// pinned: the session's state is more than Sluice replays (too many
	// variables, a variable it cannot read back, a multi-statement that
	// changed it).
	pinned bool
	// ownConnection: the routing policy gives each session one connection
	// for life (readconnroute).
	ownConnection bool
	// previous: the answer just given leaves something only its connection
	// can tell (warnings for SHOW WARNINGS, affected rows for ROW_COUNT(),
	// SQL_CALC_FOUND_ROWS for FOUND_ROWS()): kept for the next command,
	// until idle.
	previous bool
}

// holdReason says why a session keeps its connections, or that it does not.
type holdReason uint8

const (
	released holdReason = iota
	holdPoolOff
	holdTransaction
	holdTemporaryTables
	holdTableLocks
	holdKept
	holdCursor
	holdLongData
	holdPinned
	holdOwnConnection
	holdPrevious
	holdNotIdle
)

var holdReasonText = [...]string{
	released:            "released",
	holdPoolOff:         "pool off",
	holdTransaction:     "transaction",
	holdTemporaryTables: "temporary tables",
	holdTableLocks:      "LOCK TABLES",
	holdKept:            "state kept on the connection",
	holdCursor:          "open cursor",
	holdLongData:        "long data",
	holdPinned:          "pinned",
	holdOwnConnection:   "router keeps one connection",
	holdPrevious:        "previous statement",
	holdNotIdle:         "not idle yet",
}

func (r holdReason) String() string { return holdReasonText[r] }

// decideRelease says whether a session's connections go back to the pool
// now, and if not, why.
func decideRelease(f holdFacts) holdReason {
	switch {
	case f.mode != PoolMultiplex && f.mode != PoolIdle:
		return holdPoolOff
	case f.ownConnection:
		return holdOwnConnection
	case f.transaction:
		return holdTransaction
	case f.temporaryTables:
		return holdTemporaryTables
	case f.tableLocks:
		return holdTableLocks
	case f.kept != "":
		return holdKept
	case f.cursor:
		return holdCursor
	case f.longData:
		return holdLongData
	case f.pinned:
		return holdPinned
	case f.idle:
		return released
	case f.previous:
		return holdPrevious
	case f.mode == PoolIdle:
		return holdNotIdle
	}
	return released
}
