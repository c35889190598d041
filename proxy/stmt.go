package proxy

import (
	"context"
	"encoding/binary"

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

// preparedStmts are a session's prepared statements by Sluice's ids.
type preparedStmts struct {
	byID   map[uint32]*preparedStmt
	nextID uint32
}

// forget drops a closing backend connection from every statement's maps.
func (p *preparedStmts) forget(b *BackendConn) {
	for _, ps := range p.byID {
		delete(ps.ids, b)
		delete(ps.typesBound, b)
		if ps.last == b {
			ps.last = nil
		}
	}
}

// reset forgets every statement (COM_RESET_CONNECTION, COM_CHANGE_USER).
func (p *preparedStmts) reset() { p.byID = nil }

// idOn is the statement's id on b, where it is prepared on first use.
func (ps *preparedStmt) idOn(b *BackendConn) (uint32, error) {
	if id, ok := ps.ids[b]; ok {
		return id, nil
	}
	id, err := b.prepare(ps.query)
	if err != nil {
		return 0, err
	}
	ps.ids[b] = id
	return id, nil
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
func (p *processor) prepareStmt(ctx context.Context, pkt []byte) error {
	if len(p.stmts.byID) >= maxStatementsPerSession {
		p.client.SendError(newSQLError(1461, "Can't create more than max_prepared_stmt_count statements (current value: %d)", maxStatementsPerSession))
		return nil
	}
	b, err := p.primaryConn(ctx)
	if err != nil {
		return err
	}
	query, pkt, st, cl, denied := p.statement(pkt)
	if denied {
		return nil
	}
	p.stmts.nextID++
	id := p.stmts.nextID
	// A prepare is harmless to send again: inside a transaction, losing the
	// primary before it answers replays the transaction.
	c := &command{pkt: pkt, prepareAs: id, attempt: attempt{replayOnLoss: p.status&mysql.SERVER_STATUS_IN_TRANS != 0}}
	res, b, err := p.forwardCommand(ctx, c, b, p.primaryConn)
	p.rec.setStmt(&st, query)
	p.rec.setRoute(true, router.ReasonPrepare, "")
	if err != nil || res.Err != nil {
		return err
	}
	if p.stmts.byID == nil {
		p.stmts.byID = map[uint32]*preparedStmt{}
	}
	p.stmts.byID[id] = &preparedStmt{
		query: query, stmt: st, class: cl, params: res.Prepare.Params,
		ids:        map[*BackendConn]uint32{b: res.Prepare.StatementID},
		typesBound: map[*BackendConn]bool{},
	}
	return nil
}

// executeStmt runs COM_STMT_EXECUTE through the statement pipeline.
func (p *processor) executeStmt(ctx context.Context, pkt []byte) error {
	ps := p.stmtOf(pkt)
	if ps == nil {
		return nil
	}
	longData := ps.longData
	cursor := len(pkt) > 5 && pkt[5]&cursorFlags != 0
	inTrans := p.status&mysql.SERVER_STATUS_IN_TRANS != 0
	if inTrans && (longData || cursor) {
		p.trx.setUnreplayable() // long data and cursors are not kept
	}
	c := &statement{command: command{pkt: pkt, ps: ps, attempt: attempt{
		retryRead:    ps.class.Route == router.RouteReplica && !ps.stmt.Multi,
		replayOnLoss: inTrans && !longData && !cursor && replayableKeyword(ps.stmt.Keyword),
		holdDeadlock: !longData && !cursor && p.deadlockRetryable(ps.stmt.Keyword),
	}}, text: ps.query, st: ps.stmt, cl: ps.class}
	if g := p.srv.genlog.Load(); g != nil && g.WantsParams() {
		params, err := executeParams(pkt, int(ps.params), ps.types, longData)
		if err != nil {
			p.log.Debug("parameters not logged", "err", err)
		}
		p.rec.params = params
	}
	err := p.runStatement(ctx, c)
	ps.longData = false
	return err
}

// stmtFollowUp forwards FETCH and RESET where their statement last executed
// (the primary when it is gone), and SEND_LONG_DATA to the primary, where
// the execute it belongs to will then run.
func (p *processor) stmtFollowUp(ctx context.Context, pkt []byte) error {
	ps := p.stmtOf(pkt)
	if ps == nil {
		return nil
	}
	b := ps.last
	switch cmd := pkt[0]; {
	case cmd == mysql.COM_STMT_SEND_LONG_DATA:
		ps.longData = true
		b = nil
	case cmd == mysql.COM_STMT_RESET:
		ps.longData = false
	}
	if b == nil {
		var err error
		if b, err = p.primaryConn(ctx); err != nil {
			return err
		}
	}
	_, _, err := p.forwardCommand(ctx, &command{pkt: pkt, ps: ps}, b, p.primaryConn)
	return err
}

// stmtOf is the statement a command names, or nil after telling the client
// it is unknown (SEND_LONG_DATA has no answer).
func (p *processor) stmtOf(pkt []byte) *preparedStmt {
	id, ok := stmtID(pkt)
	ps := p.stmts.byID[id]
	if !ok || ps == nil {
		if cmd := pkt[0]; cmd != mysql.COM_STMT_SEND_LONG_DATA {
			p.client.SendError(newSQLError(mysql.ER_UNKNOWN_STMT_HANDLER, "Unknown prepared statement handler (%d) given to %s", id, commandName(cmd)))
		}
		return nil
	}
	return ps
}

// closeStmt closes a statement everywhere it was prepared, and records it
// for the audit trail (query, fingerprint, digest); COM_STMT_CLOSE
// has no answer.
func (p *processor) closeStmt(pkt []byte) {
	id, ok := stmtID(pkt)
	ps := p.stmts.byID[id]
	if !ok || ps == nil {
		return
	}
	delete(p.stmts.byID, id)
	// The audit record names the statement it closes.
	p.rec.setStmt(&ps.stmt, ps.query)
	for b, backendID := range ps.ids {
		closeStatement(b, backendID)
	}
}

// closeStatement closes a statement on b; COM_STMT_CLOSE has no answer, and
// a connection that fails here fails at its next command.
func closeStatement(b *BackendConn, id uint32) {
	out := []byte{mysql.COM_STMT_CLOSE, 0, 0, 0, 0}
	setStmtID(out, id)
	_ = b.PacketIO().SendCommand(out)
}
