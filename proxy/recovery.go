package proxy

// This file decides what a session does when a server connection fails
// under it. The decision is a pure function of the situation (lossFacts),
// tested as a table; Session.recover carries it out.

// lostConn says which of the session's connections failed.
type lostConn uint8

const (
	// lostPrimary: the primary connection (with readconnroute, the
	// session's one connection).
	lostPrimary lostConn = iota
	// lostTransactionReplica: the replica holding a read-only transaction.
	lostTransactionReplica
	// lostReplica: a replica connection serving an autocommit read.
	lostReplica
)

// lossPhase says how far the command had gone when its connection failed.
type lossPhase uint8

const (
	// beforeAnswer: the client has seen nothing of the answer.
	beforeAnswer lossPhase = iota
	// duringAnswer: part of the answer reached the client; nothing more
	// can be said to it in protocol.
	duringAnswer
	// afterAnswer: the client has its whole answer; Sluice's own follow-up
	// query failed (reading the last GTID or the session state back).
	afterAnswer
)

// lossFacts is what decides the recovery.
type lossFacts struct {
	conn  lostConn
	phase lossPhase
	// stateLost: the session state the command set is unknown (its read
	// back failed), so no other connection can take this one's place.
	stateLost bool
	// replayable: the transaction the connection held may be replayed
	// (router.transaction_replay, the statement may run again, the log
	// is whole, no temporary tables).
	replayable bool
	// readOnly: the transaction is a read-only one on a replica.
	readOnly bool
	// retryRead: the command is a read that may run again on a new
	// connection.
	retryRead bool
	// inTransaction: a transaction is open or autocommit is off.
	inTransaction bool
	// temporaryTables: the session has temporary tables, which live only
	// on its primary connection.
	temporaryTables bool
	// movable: the routing policy lets a session's connections be replaced.
	movable bool
}

// recovery is what the session does about a lost connection.
type recovery uint8

const (
	// endSession: close the session without a word (the client cannot be
	// told anything in protocol, or already has its answer).
	endSession recovery = iota
	// reportAndEnd: error 2013 naming the server, then close the session.
	reportAndEnd
	// reportTransactionAndEnd: error 2013 saying the read-only
	// transaction is lost, then close the session: running the rest
	// elsewhere would silently lose its snapshot.
	reportTransactionAndEnd
	// retryOnPrimary: a replica failed before answering; nothing of the
	// session lives only there, so the command runs on the primary.
	retryOnPrimary
	// retryOnNewPrimary: a read the primary's connection lost before any
	// answer (the server restarted under it) runs again on a new one.
	retryOnNewPrimary
	// replayTransaction: the transaction is replayed on another connection
	// (the next primary, or another replica), then the command runs again.
	replayTransaction
	// reportAndReconnect: error 2013 for this command; nothing of the
	// session lives only on that connection, so its state is replayed on
	// the next one at the next command.
	reportAndReconnect
	// reconnect: as reportAndReconnect, with no error: the client already
	// has its answer.
	reconnect
)

// decideRecovery is what to do about a lost connection.
func decideRecovery(f lossFacts) recovery {
	// Nothing of the session lives only on the primary connection.
	disposable := f.movable && !f.inTransaction && !f.temporaryTables
	switch f.phase {
	case duringAnswer:
		return endSession
	case afterAnswer:
		if f.conn == lostPrimary && disposable && !f.stateLost {
			return reconnect
		}
		return endSession
	}
	switch f.conn {
	case lostTransactionReplica:
		if f.readOnly && f.replayable {
			return replayTransaction
		}
		return reportTransactionAndEnd
	case lostReplica:
		return retryOnPrimary
	}
	switch {
	case f.replayable && !f.readOnly:
		return replayTransaction
	case f.retryRead && disposable:
		return retryOnNewPrimary
	case disposable:
		return reportAndReconnect
	}
	return reportAndEnd
}
