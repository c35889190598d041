package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/router"
)

// cursorFlags are COM_STMT_EXECUTE's flags that open a cursor
// (CURSOR_TYPE_READ_ONLY, _FOR_UPDATE, _SCROLLABLE).
const cursorFlags = 0x07

// maxStatementsPerSession bounds prepared statements per session, as
// max_prepared_stmt_count bounds them per server.
const maxStatementsPerSession = 1024

// preparedStmt is a binary-protocol statement under Sluice's own id, mapped
// to each backend connection it is prepared on.
type preparedStmt struct {
	query  string
	stmt   router.Statement
	class  *router.Class
	params uint16
	// ids maps a backend connection to the server's id for the statement.
	ids map[*BackendConn]uint32
	// typesBound records the connections that have the parameter types.
	typesBound map[*BackendConn]bool
	// types is the last parameter type block the client sent.
	types []byte
	// longData: SEND_LONG_DATA went to the primary; the next execute must too.
	longData bool
	// last is where the statement last executed: FETCH and RESET go there.
	last *BackendConn
}

// forget drops a closed backend connection from every statement's maps.
func (s *Session) forgetStatements(b *BackendConn) {
	for _, ps := range s.stmts {
		delete(ps.ids, b)
		delete(ps.typesBound, b)
		if ps.last == b {
			ps.last = nil
		}
	}
}

// stmtID reads the statement id of COM_STMT_EXECUTE, _FETCH, _RESET,
// _CLOSE or _SEND_LONG_DATA.
func stmtID(pkt []byte) (uint32, bool) {
	if len(pkt) < 5 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(pkt[1:]), true
}

func setStmtID(pkt []byte, id uint32) { binary.LittleEndian.PutUint32(pkt[1:], id) }

// bindTypes makes an execute packet carry the parameter types when the
// target connection has not seen them: a client sends types only on the
// first execute, and that may have run on another server. It returns the
// packet to send (maybe a new one).
func (ps *preparedStmt) bindTypes(pkt []byte, b *BackendConn) []byte {
	if ps.typesBound[b] && !ps.sendsTypes(pkt) {
		return pkt
	}
	out := ps.withTypes(pkt)
	if ps.sendsTypes(out) {
		ps.typesBound[b] = true
	}
	return out
}

// typesFlagAt is where an execute packet says whether parameter types follow.
func (ps *preparedStmt) typesFlagAt() int { return 10 + (int(ps.params)+7)/8 }

// sendsTypes reports whether an execute packet carries parameter types.
func (ps *preparedStmt) sendsTypes(pkt []byte) bool {
	at := ps.typesFlagAt()
	return ps.params > 0 && len(pkt) > at && pkt[at] == 1
}

// withTypes returns the execute packet carrying the parameter types: as it
// is when it does (the types are remembered), or with the last types the
// client sent added.
func (ps *preparedStmt) withTypes(pkt []byte) []byte {
	if ps.params == 0 {
		return pkt
	}
	flagAt := ps.typesFlagAt()
	if len(pkt) <= flagAt {
		return pkt
	}
	typesLen := 2 * int(ps.params)
	if pkt[flagAt] == 1 {
		if len(pkt) >= flagAt+1+typesLen {
			ps.types = append(ps.types[:0], pkt[flagAt+1:flagAt+1+typesLen]...)
		}
		return pkt
	}
	if len(ps.types) != typesLen {
		return pkt
	}
	out := make([]byte, 0, len(pkt)+typesLen)
	out = append(out, pkt[:flagAt]...)
	out = append(out, 1)
	out = append(out, ps.types...)
	out = append(out, pkt[flagAt+1:]...)
	return out
}

// prepareStmt prepares on the primary (it answers with the metadata the
// client needs, and writes can only run there) and hands the client
// Sluice's own statement id.
func (s *Session) prepareStmt(ctx context.Context, pkt []byte) error {
	if len(s.stmts) >= maxStatementsPerSession {
		s.writeErr(newSQLError(1461, "Can't create more than max_prepared_stmt_count statements (current value: %d)", maxStatementsPerSession))
		return nil
	}
	b, err := s.primaryConn(ctx)
	if err != nil {
		return err
	}
	query, pkt, st, cl, denied := s.statement(pkt)
	if denied {
		return nil
	}
	s.nextStmtID++
	id := s.nextStmtID
	// A prepare is harmless to send again: inside a transaction, losing the
	// primary before it answers replays the transaction.
	s.cur.replayOnLoss = s.status&mysql.SERVER_STATUS_IN_TRANS != 0
	res, err := s.forwardPrepare(b, pkt, id)
	if errors.Is(err, errTransactionLost) {
		if err := s.replayLost(ctx); err != nil {
			return err
		}
		b = s.primary
		res, err = s.forwardPrepare(b, pkt, id)
	}
	s.cur.server, s.cur.res, s.cur.route = b.Server, res, "primary: prepare"
	s.cur.setStmt(&st, query)
	if err != nil || res.Err != nil {
		return err
	}
	if s.stmts == nil {
		s.stmts = map[uint32]*preparedStmt{}
	}
	s.stmts[id] = &preparedStmt{
		query: query, stmt: st, class: cl, params: res.Prepare.Params,
		ids:        map[*BackendConn]uint32{b: res.Prepare.StatementID},
		typesBound: map[*BackendConn]bool{},
	}
	return nil
}

// forwardPrepare relays COM_STMT_PREPARE's answer with the statement id
// replaced by Sluice's.
func (s *Session) forwardPrepare(b *BackendConn, pkt []byte, id uint32) (Result, error) {
	bio := b.PacketIO()
	bio.ResetSequence()
	if err := bio.WritePacket(pkt); err != nil {
		return Result{}, s.backendFailed(b, err, 0)
	}
	if err := bio.FlushAwait(); err != nil {
		return Result{}, s.backendFailed(b, err, 0)
	}
	first, err := bio.ReadPacket()
	if err != nil {
		return Result{}, s.backendFailed(b, err, 0)
	}
	s.client.SetSequence(bio.Sequence() - 1)
	if len(first) > 0 && first[0] == mysql.ERR_HEADER {
		e := parseErr(first)
		s.writeErr(e)
		return Result{Err: e}, nil
	}
	if len(first) < 12 {
		return Result{}, s.backendFailed(b, fmt.Errorf("%w: short prepare answer", errMalformed), 0)
	}
	res := Result{Prepare: PrepareOK{
		StatementID: binary.LittleEndian.Uint32(first[1:]),
		Columns:     binary.LittleEndian.Uint16(first[5:]),
		Params:      binary.LittleEndian.Uint16(first[7:]),
	}}
	setStmtID(first, id)
	if err := s.client.WritePacket(first); err != nil {
		return res, err
	}
	r := relay{backend: bio, client: s.client, deprecateEOF: s.caps&mysql.CLIENT_DEPRECATE_EOF != 0}
	for _, n := range []uint16{res.Prepare.Params, res.Prepare.Columns} {
		count := int(n)
		if n > 0 && !r.deprecateEOF {
			count++
		}
		for range count {
			if _, err := r.next(); err != nil {
				return res, s.backendFailed(b, err, 1)
			}
		}
	}
	return res, r.flush()
}

// stmtCommand routes EXECUTE, FETCH, RESET and SEND_LONG_DATA.
func (s *Session) stmtCommand(ctx context.Context, pkt []byte) error {
	cmd := pkt[0]
	id, ok := stmtID(pkt)
	ps := s.stmts[id]
	if !ok || ps == nil {
		if cmd != mysql.COM_STMT_SEND_LONG_DATA {
			s.writeErr(newSQLError(mysql.ER_UNKNOWN_STMT_HANDLER, "Unknown prepared statement handler (%d) given to %s", id, commandName(cmd)))
		}
		return nil
	}
	var b *BackendConn
	longData := ps.longData
	switch cmd {
	case mysql.COM_STMT_EXECUTE:
		d, err := s.routeStmt(ctx, ps)
		if err != nil {
			return err
		}
		b = d.backend
		ps.longData = false
	case mysql.COM_STMT_SEND_LONG_DATA:
		var err error
		if b, err = s.primaryConn(ctx); err != nil {
			return err
		}
		ps.longData = true
	default: // FETCH and RESET follow their execute
		b = ps.last
		if b == nil {
			var err error
			if b, err = s.primaryConn(ctx); err != nil {
				return err
			}
		}
		if cmd == mysql.COM_STMT_RESET {
			ps.longData = false
		}
	}
	backendID, ok := ps.ids[b]
	if !ok {
		var err error
		if backendID, err = b.prepare(ps.query); err != nil {
			var se *SQLError
			if errors.As(err, &se) {
				s.writeErr(se)
				return nil
			}
			return s.backendFailed(b, err, 0)
		}
		ps.ids[b] = backendID
	}
	if cmd == mysql.COM_STMT_EXECUTE {
		pkt = ps.bindTypes(pkt, b)
		ps.last = b
		if s.status&mysql.SERVER_STATUS_IN_TRANS != 0 {
			if longData || len(pkt) > 5 && pkt[5]&cursorFlags != 0 {
				s.trx.setUnreplayable() // long data and cursors are not kept
			} else {
				s.cur.replayOnLoss = replayableKeyword(ps.stmt.Keyword)
			}
		}
		s.cur.holdDeadlock = !longData && (len(pkt) <= 5 || pkt[5]&cursorFlags == 0) && s.deadlockRetryable(ps.stmt.Keyword)
		if g := s.srv.genlog.Load(); g != nil && g.WantsParams() {
			params, err := executeParams(pkt, int(ps.params), ps.types, longData)
			if err != nil {
				s.log.Debug("parameters not logged", "err", err)
			}
			s.cur.params = params
		}
	}
	setStmtID(pkt, backendID)
	res, err := s.forward(b, pkt)
	if errors.Is(err, errReplicaLost) {
		setStmtID(pkt, id)
		ps.longData = true // forces the primary
		return s.stmtCommand(ctx, pkt)
	}
	if errors.Is(err, errTransactionLost) {
		if err := s.replayLost(ctx); err != nil {
			return err
		}
		setStmtID(pkt, id)
		return s.stmtCommand(ctx, pkt) // on the new primary
	}
	if err == nil && res.Held {
		res, err = s.retryDeadlock(b, pkt, res.Err)
	}
	if err != nil || cmd != mysql.COM_STMT_EXECUTE {
		return err
	}
	var exec []byte
	if s.status&mysql.SERVER_STATUS_IN_TRANS != 0 && s.srv.cfg.Load().Recovery.TransactionReplay {
		exec = ps.withTypes(pkt)
	}
	s.recordTrx(&ps.stmt, ps.class, ps.query, exec, b, res)
	s.srv.metrics.routed(b == s.primary)
	s.cur.setStmt(&ps.stmt, ps.query)
	s.cur.setRoute(b == s.primary, ps.class.Reason)
	return s.after(ctx, &ps.stmt, ps.class, b, res)
}

// routeStmt chooses the server for an execute.
func (s *Session) routeStmt(ctx context.Context, ps *preparedStmt) (decision, error) {
	if ps.longData {
		b, err := s.primaryConn(ctx)
		return decision{backend: b, reason: "long data"}, err
	}
	if s.srv.router.Config().Type == "readconnroute" {
		b, err := s.primaryConn(ctx)
		return decision{backend: b, reason: "connection"}, err
	}
	return s.route(ctx, &ps.stmt, ps.class)
}

// closeStmt closes a statement everywhere it was prepared; COM_STMT_CLOSE
// has no answer.
func (s *Session) closeStmt(pkt []byte) {
	id, ok := stmtID(pkt)
	ps := s.stmts[id]
	if !ok || ps == nil {
		return
	}
	delete(s.stmts, id)
	for b, backendID := range ps.ids {
		closeStatement(b, backendID)
	}
}

// closeStatement closes a statement on b; COM_STMT_CLOSE has no answer, and
// a connection that fails here fails at its next command.
func closeStatement(b *BackendConn, id uint32) {
	out := []byte{mysql.COM_STMT_CLOSE, 0, 0, 0, 0}
	setStmtID(out, id)
	bio := b.PacketIO()
	bio.ResetSequence()
	if bio.WritePacket(out) == nil {
		_ = bio.Flush()
	}
}
