package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/router"
)

// errTransactionLost means the primary's connection failed inside a
// transaction that can be replayed on the next primary (router.transaction_replay).
var errTransactionLost = errors.New("primary lost inside a replayable transaction")

// trxLog is the open transaction as the client saw it: each statement and
// the answer it got. Transaction replay runs them again on a new primary
// and goes on only if every answer is the same. Only statements answered by
// OK or ERR are kept; anything else (a result set, a prepared statement, a
// multi-statement, XA, more than router.transaction_replay_max_size of
// text) makes the transaction one that is not replayed.
type trxLog struct {
	entries      []trxEntry
	size         int
	unreplayable bool
}

// reset forgets the log; it costs nothing when there is none.
func (t *trxLog) reset() {
	if t.entries != nil || t.size != 0 || t.unreplayable {
		*t = trxLog{}
	}
}

type trxEntry struct {
	query        string
	errCode      uint16
	affected     uint64
	lastInsertID uint64
}

// recordTrx adds a statement the primary answered to the open transaction's
// log, or forgets the log when no transaction is open after it.
func (s *Session) recordTrx(st *router.Statement, text string, b *BackendConn, res Result) {
	t := &s.trx
	if s.status&mysql.SERVER_STATUS_IN_TRANS == 0 {
		t.reset() // the transaction ended
		return
	}
	if t.unreplayable || b != s.primary {
		return
	}
	cfg := s.srv.router.Config()
	if !cfg.TransactionReplay {
		return
	}
	if res.ResultSet || st.Multi || strings.EqualFold(st.Keyword, "XA") || t.size+len(text) > cfg.TransactionReplayMaxSize {
		*t = trxLog{unreplayable: true}
		return
	}
	e := trxEntry{query: text, affected: res.OK.Affected, lastInsertID: res.OK.LastInsertID}
	if res.Err != nil {
		e.errCode = res.Err.Code
	}
	t.entries = append(t.entries, e)
	t.size += len(text)
}

// trxReplayable reports whether a primary connection lost before answering
// the current command can be replaced, its transaction replayed.
func (s *Session) trxReplayable() bool {
	return s.cur.replayOnLoss && s.status&mysql.SERVER_STATUS_IN_TRANS != 0 && !s.trx.unreplayable &&
		len(s.temps) == 0 && s.srv.router.Config().TransactionReplay
}

// replayTransaction opens a connection to the (next) primary, brings it to
// the session's state and runs the transaction's statements again. It
// fails, leaving no transaction open, when an answer differs.
func (s *Session) replayTransaction(ctx context.Context) error {
	m := s.srv.metrics
	b, err := s.dialPrimary(ctx)
	if err != nil {
		m.replayFailed.Inc()
		return err
	}
	fail := func(err error) error {
		b.QuitAndClose() // the server rolls back what was replayed
		m.backendConns.Dec()
		m.replayFailed.Inc()
		s.trx = trxLog{}
		return err
	}
	if err := s.sync(b); err != nil {
		return fail(fmt.Errorf("restoring session state on %s: %w", b.Server, err))
	}
	for i, e := range s.trx.entries {
		ok, err := b.commandOK(commandPacket(mysql.COM_QUERY, e.query))
		var code uint16
		var se *SQLError
		if errors.As(err, &se) {
			code, err = se.Code, nil
		}
		if err != nil {
			return fail(fmt.Errorf("replaying on %s: %w", b.Server, err))
		}
		if code != e.errCode || ok.Affected != e.affected || ok.LastInsertID != e.lastInsertID {
			// The statement's text stays out of the message: it may hold secrets.
			return fail(fmt.Errorf("statement %d of %d answered differently on %s (error %d, %d rows, insert id %d; the client saw error %d, %d rows, insert id %d)",
				i+1, len(s.trx.entries), b.Server, code, ok.Affected, ok.LastInsertID, e.errCode, e.affected, e.lastInsertID))
		}
	}
	s.primary, s.status = b, b.Status
	m.replayed.Inc()
	s.log.Info("transaction replayed on the new primary", "server", b.Server, "statements", len(s.trx.entries))
	return nil
}
