package proxy

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/router"
)

// trxLog is the open transaction as the client saw it: each statement and
// the answer it got (error code, affected rows, insert id, and a checksum of
// the columns and rows it read). Transaction replay runs them again on a new
// primary and goes on only if every answer is the same. A multi-statement,
// XA, LOAD DATA, a prepared statement's long data or cursor, or more than
// router.transaction_replay_max_size of statements makes the transaction
// one that is not replayed.
type trxLog struct {
	entries      []trxEntry
	size         int
	unreplayable bool
	// readOnly: the transaction runs on a replica (START TRANSACTION READ
	// ONLY); it is replayed on another replica.
	readOnly bool
	// stateVersion is the session state's version when the first entry was
	// logged. A replay restores the session's current state, so a
	// transaction that changed it (SET, USE, a user variable) is not
	// replayed: its earlier statements would run in the later state.
	stateVersion uint64
	// sum checksums the rows of the statement being relayed.
	sum maphash.Hash
}

// trxSeed seeds every rows checksum: the answers replayed are compared
// with those relayed earlier by the same process.
var trxSeed = maphash.MakeSeed()

// startSum makes the rows checksum ready for a statement.
func (t *trxLog) startSum() *maphash.Hash {
	t.sum.SetSeed(trxSeed) // also resets it
	return &t.sum
}

// reset forgets the log; it costs nothing when there is none.
func (t *trxLog) reset() {
	if t.entries != nil || t.size != 0 || t.unreplayable || t.readOnly {
		t.entries, t.size, t.unreplayable, t.readOnly = nil, 0, false, false
	}
}

// replayable reports whether the log can be replayed in the session state
// at version.
func (t *trxLog) replayable(version uint64) bool {
	return !t.unreplayable && (len(t.entries) == 0 || t.stateVersion == version)
}

// setUnreplayable forgets the log: the transaction will not be replayed.
func (t *trxLog) setUnreplayable() {
	t.entries, t.size, t.unreplayable = nil, 0, true
}

type trxEntry struct {
	// query is the statement's text, or the prepared statement's for exec.
	query string
	// exec is a COM_STMT_EXECUTE packet with its parameter types, for a
	// prepared statement (its id is the server's, replaced on replay).
	exec         []byte
	errCode      uint16
	affected     uint64
	lastInsertID uint64
	rows         int64
	rowsSum      uint64
}

// recordTrx adds a statement the primary, or the replica holding a
// read-only transaction, answered to the open transaction's log, or forgets
// the log when no transaction is open after it. exec is the execute packet
// when the statement ran prepared.
func (p *processor) recordTrx(st *router.Statement, cl *router.Class, text string, exec []byte, b *BackendConn, res Result) {
	t := &p.trx
	if p.status&mysql.SERVER_STATUS_IN_TRANS == 0 || res.Err != nil && res.Err.Code == mysql.ER_LOCK_DEADLOCK {
		t.reset() // the transaction ended; a deadlock rolled it back
		return
	}
	// The START of a read-only transaction is answered before the session
	// knows the replica holds it.
	primary := p.backends.primary
	onReplica := b != primary && (b == p.backends.tx || cl.Begin && cl.ReadOnly)
	if t.unreplayable || b != primary && !onReplica {
		return
	}
	if !t.replayable(p.state.version) {
		t.setUnreplayable()
		return
	}
	cfg := p.srv.cfg.Load().Recovery
	if !cfg.TransactionReplay {
		return
	}
	size := len(text) + len(exec)
	if st.Multi || st.Keyword == "XA" || st.Keyword == "LOAD" ||
		t.size+size > cfg.TransactionReplayMaxSize {
		t.setUnreplayable()
		return
	}
	if len(t.entries) == 0 {
		t.stateVersion, t.readOnly = p.state.version, onReplica
	} else if t.readOnly != onReplica {
		t.setUnreplayable()
		return
	}
	e := trxEntry{query: text, affected: res.OK.Affected, lastInsertID: res.OK.LastInsertID, rows: res.Rows, rowsSum: res.RowsSum}
	if exec != nil {
		e.exec = append([]byte(nil), exec...) // the packet's buffer is reused
	}
	if res.Err != nil {
		e.errCode = res.Err.Code
	}
	t.entries = append(t.entries, e)
	t.size += size
}

// trxReplayable reports whether the connection holding the transaction,
// lost before answering the command a, can be replaced, its transaction
// replayed.
func (p *processor) trxReplayable(a *attempt) bool {
	return a.replayOnLoss && p.status&mysql.SERVER_STATUS_IN_TRANS != 0 && p.trx.replayable(p.state.version) &&
		len(p.temps) == 0 && p.srv.cfg.Load().Recovery.TransactionReplay
}

// replayLost replays the transaction whose connection was lost before the
// current command answered; when it cannot be, the client is told to retry
// the transaction.
func (p *processor) replayLost(ctx context.Context) error {
	if err := p.replayTransaction(ctx); err != nil {
		p.client.SendError(newSQLError(mysql.ER_LOCK_DEADLOCK, "Sluice: the transaction was lost with its server connection and could not be replayed: %v; retry the transaction", err))
		return errReported
	}
	return nil
}

// replayTransaction opens a connection to the (next) primary, or for a
// read-only transaction takes another replica, brings it to the session's
// state and runs the transaction's statements again. It fails, leaving no
// transaction open, when an answer differs.
func (p *processor) replayTransaction(ctx context.Context) error {
	m, bs := p.srv.metrics, &p.backends
	if p.trx.readOnly {
		b := bs.replicaConn(ctx, 0)
		if b == nil {
			m.replayFailed.Inc()
			p.trx.reset()
			return errors.New("no other server to replay the read-only transaction on")
		}
		if err := p.replayLog(b); err != nil {
			// The connection is the session's for other reads: end what
			// the replay opened rather than close it.
			p.rollbackReplay(b)
			m.replayFailed.Inc()
			p.trx.reset()
			return err
		}
		if b != bs.primary {
			bs.tx = b
		}
		p.status = b.Status
		m.replayed.Inc()
		p.log.Info("read-only transaction replayed on another server", "server", b.Server, "statements", len(p.trx.entries))
		return nil
	}
	b, err := bs.dialPrimary(ctx)
	if err != nil {
		m.replayFailed.Inc()
		return err
	}
	fail := func(err error) error {
		bs.closeConn(b) // the server rolls back what was replayed
		m.replayFailed.Inc()
		p.trx.reset()
		return err
	}
	if err := bs.sync(b, true); err != nil {
		return fail(fmt.Errorf("restoring session state on %s: %w", b.Server, err))
	}
	if err := p.replayLog(b); err != nil {
		return fail(err)
	}
	bs.primary, p.status = b, b.Status
	m.replayed.Inc()
	p.log.Info("transaction replayed on the new primary", "server", b.Server, "statements", len(p.trx.entries))
	return nil
}

// errDeadlocked: a replayed statement was a deadlock's victim.
var errDeadlocked = errors.New("deadlocked again")

// replayLog runs the transaction's statements on b, each answer relayed to
// nowhere and compared with what the client saw.
func (p *processor) replayLog(b *BackendConn) error {
	discard := NewPacketIO(discardConn{})
	defer discard.Close()
	// Statements prepared for the replay are closed after it: the session's
	// own are prepared again on first use, under its ids.
	prepared := map[string]uint32{}
	defer func() {
		for _, id := range prepared {
			closeStatement(b, id)
		}
	}()
	for i, e := range p.trx.entries {
		pkt := commandPacket(mysql.COM_QUERY, e.query)
		if e.exec != nil {
			id, ok := prepared[e.query]
			if !ok {
				var err error
				if id, err = b.prepare(e.query); err != nil {
					return fmt.Errorf("preparing statement %d of %d on %s: %w", i+1, len(p.trx.entries), b.Server, err)
				}
				prepared[e.query] = id
			}
			pkt = append([]byte(nil), e.exec...)
			setStmtID(pkt, id)
		}
		res, _, err := p.exchange(b, pkt, relay{client: discard, sum: p.trx.startSum()})
		if err != nil {
			return fmt.Errorf("replaying on %s: %w", b.Server, err)
		}
		var code uint16
		if res.Err != nil {
			code = res.Err.Code
		}
		if code == mysql.ER_LOCK_DEADLOCK && e.errCode != code {
			return errDeadlocked
		}
		if code != e.errCode || res.OK.Affected != e.affected || res.OK.LastInsertID != e.lastInsertID ||
			res.Rows != e.rows || res.RowsSum != e.rowsSum {
			// The statement's text stays out of the message: it may hold secrets.
			return fmt.Errorf("statement %d of %d answered differently on %s (error %d, %d affected, insert id %d, %d rows; the client saw error %d, %d affected, insert id %d, %d rows%s)",
				i+1, len(p.trx.entries), b.Server, code, res.OK.Affected, res.OK.LastInsertID, res.Rows,
				e.errCode, e.affected, e.lastInsertID, e.rows, map[bool]string{true: ", other values"}[res.RowsSum != e.rowsSum])
		}
	}
	return nil
}

// rollbackReplay ends, on a connection that stays the session's, what a
// replay that failed part-way opened; a failure here shows at the
// connection's next command.
func (p *processor) rollbackReplay(b *BackendConn) {
	discard := NewPacketIO(discardConn{})
	defer discard.Close()
	_, _, _ = p.exchange(b, commandPacket(mysql.COM_QUERY, "ROLLBACK"), relay{client: discard})
}

// deadlockRetryable reports whether a deadlock answer to a statement may be
// held back from the client and the transaction replayed
// (router.transaction_replay_retry_on_deadlock). A deadlock rolls the whole
// transaction back, so even a COMMIT (a Galera certification failure) is
// safe to run again.
func (p *processor) deadlockRetryable(keyword string) bool {
	cfg := p.srv.cfg.Load().Recovery
	return cfg.TransactionReplayRetryOnDeadlock && p.trx.replayable(p.state.version) &&
		(replayableKeyword(keyword) || keyword == "COMMIT")
}

// retryDeadlock replays, on the same connection b, the transaction the
// server rolled back when it answered the current command pkt with the
// deadlock, and runs the command again, up to
// router.transaction_replay_attempts times. When the attempts run out, or
// an answer differs, the client gets the deadlock.
func (p *processor) retryDeadlock(b *BackendConn, pkt []byte, deadlock *SQLError) (Result, error) {
	m := p.srv.metrics
	attempts := p.srv.cfg.Load().Recovery.TransactionReplayAttempts
	for n := 1; n <= attempts; n++ {
		err := p.replayLog(b)
		if errors.Is(err, errDeadlocked) {
			continue // rolled back again
		}
		if err != nil {
			p.log.Info("transaction not replayed after a deadlock", "server", b.Server, "err", err)
			p.rollbackReplay(b) // it may have opened a transaction and changed rows
			break
		}
		// The last answer goes to the client as it is.
		a := attempt{holdDeadlock: n < attempts}
		res, forwarded, err := p.forward(b, pkt, &a, 0)
		if err != nil {
			if _, err = p.recover(b, err, forwarded, &a); err == nil {
				err = errReported // a retry or replay, which a nested attempt never asks for
			}
			return res, err
		}
		if res.Err != nil && res.Err.Code == mysql.ER_LOCK_DEADLOCK {
			if res.Held {
				continue
			}
			m.replayFailed.Inc() // the last attempt's deadlock went to the client
			p.trx.reset()
			return res, nil
		}
		m.replayed.Inc()
		p.log.Info("transaction replayed after a deadlock", "server", b.Server, "statements", len(p.trx.entries), "attempt", n)
		return res, nil
	}
	m.replayFailed.Inc()
	p.trx.reset()
	p.client.SendError(deadlock)
	res := Result{Err: deadlock}
	p.rec.res = res
	return res, nil
}

// discardConn is the client of a replayed statement: what is written to it
// is dropped.
type discardConn struct{}

func (discardConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return nil }
func (discardConn) RemoteAddr() net.Addr             { return nil }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
