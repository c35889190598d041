package proxy

import (
	"bytes"
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

// preparedStmt is a binary-protocol statement under Sluice's own id. On
// each connection it runs on it is prepared once, under its key, and shared
// with any session preparing the same text in the same schema and mode.
type preparedStmt struct {
	query string
	// serverText is what the servers prepare: query, with CONNECTION_ID()
	// replaced under pooling.
	serverText string
	// key names the statement on a connection: its text, and the schema,
	// sql_mode and character set it was prepared under, which decide what
	// the text means.
	key    string
	db     string
	stmt   router.Statement
	class  *router.Class
	params uint16
	// types is the last parameter type block the client sent.
	types []byte
	// longData: SEND_LONG_DATA went to the primary; the next execute must too.
	longData bool
	// cursor: an execute opened a cursor that is not yet read to its end.
	cursor bool
	// last is where the statement last executed: FETCH and RESET go there.
	last *BackendConn
}

// preparedStmts are a session's prepared statements by Sluice's ids.
type preparedStmts struct {
	byID   map[uint32]*preparedStmt
	nextID uint32
	// cursors and longData count the statements with a cursor open and
	// with long data waiting for their execute.
	cursors, longData int
}

// forget drops a connection the session gives up from every statement.
func (p *preparedStmts) forget(b *BackendConn) {
	for _, ps := range p.byID {
		if ps.last == b {
			ps.last = nil
			p.setCursor(ps, false)
		}
	}
}

// setCursor records whether ps has a cursor open.
func (p *preparedStmts) setCursor(ps *preparedStmt, open bool) {
	setCounted(&ps.cursor, &p.cursors, open)
}

// setCounted sets a statement's flag, keeping the count of statements
// that have it.
func setCounted(flag *bool, count *int, on bool) {
	if *flag != on {
		*flag = on
		if on {
			*count++
		} else {
			*count--
		}
	}
}

// setLongData records whether ps has long data waiting for its execute.
func (p *preparedStmts) setLongData(ps *preparedStmt, pending bool) {
	setCounted(&ps.longData, &p.longData, pending)
}

// reset forgets every statement (COM_RESET_CONNECTION, COM_CHANGE_USER).
func (p *preparedStmts) reset() { p.byID, p.cursors, p.longData = nil, 0, 0 }

// maxStmtsPerConn bounds the statements prepared on one connection; the
// least recently used one is closed to make room. With pooling, 100
// connections to a server hold at most 25,600, over the server's default
// max_prepared_stmt_count of 16,382 only when every session prepares
// different texts.
const maxStmtsPerConn = 256

// serverStmts are the statements prepared on one connection, by key.
type serverStmts struct {
	byKey map[string]*serverStmt
	clock uint64
}

// serverStmt is a statement prepared on one connection.
type serverStmt struct {
	id uint32
	// types is the parameter type block the server last received for it.
	types []byte
	used  uint64
}

func (s *serverStmts) get(key string) *serverStmt {
	st := s.byKey[key]
	if st != nil {
		s.clock++
		st.used = s.clock
	}
	return st
}

// add records a statement prepared on b under key. It returns the ids the
// caller must close on b: the least recently used one when b is full, or
// id itself when key was already there (a second prepare of the same text).
func (s *serverStmts) add(key string, id uint32) (closeIDs []uint32) {
	if s.byKey == nil {
		s.byKey = map[string]*serverStmt{}
	}
	if _, ok := s.byKey[key]; ok {
		return []uint32{id}
	}
	if len(s.byKey) >= maxStmtsPerConn {
		var oldestKey string
		var oldest *serverStmt
		for k, st := range s.byKey {
			if oldest == nil || st.used < oldest.used {
				oldestKey, oldest = k, st
			}
		}
		delete(s.byKey, oldestKey)
		closeIDs = append(closeIDs, oldest.id)
	}
	s.clock++
	s.byKey[key] = &serverStmt{id: id, used: s.clock}
	return closeIDs
}

// on is the statement prepared on b, prepared there first when it is not
// (in its own schema, when the connection has moved to another since).
func (ps *preparedStmt) on(b *BackendConn) (*serverStmt, error) {
	if st := b.stmts.get(ps.key); st != nil {
		return st, nil
	}
	id, err := b.prepareIn(ps.db, ps.serverText)
	if err != nil {
		return nil, err
	}
	for _, old := range b.stmts.add(ps.key, id) {
		closeStatement(b, old)
	}
	return b.stmts.get(ps.key), nil
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
// server's statement st last received others (or none): a client sends
// types only on the first execute, and that may have run on another
// connection, or another session's execute of the same statement may have
// bound other types since. It returns the packet to send (maybe a new one).
func (ps *preparedStmt) bindTypes(pkt []byte, st *serverStmt) []byte {
	out := ps.withTypes(pkt)
	if !ps.sendsTypes(out) {
		return out
	}
	if !ps.sendsTypes(pkt) && bytes.Equal(st.types, ps.types) {
		return pkt // the server has these types: send the client's packet
	}
	st.types = append(st.types[:0], ps.types...)
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
	sent := string(pkt[1:])
	ps := &preparedStmt{query: query, serverText: sent, key: p.stmtKey(sent), db: p.state.db, stmt: st, class: cl, params: res.Prepare.Params}
	p.stmts.byID[id] = ps
	for _, old := range b.stmts.add(ps.key, res.Prepare.StatementID) {
		closeStatement(b, old)
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
	p.stmts.setLongData(ps, false)
	// The server keeps a cursor open until its last row is fetched.
	p.stmts.setCursor(ps, cursor && err == nil && p.status&mysql.SERVER_STATUS_CURSOR_EXISTS != 0)
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
	cmd := pkt[0]
	switch cmd {
	case mysql.COM_STMT_SEND_LONG_DATA:
		p.stmts.setLongData(ps, true)
		b = nil
	case mysql.COM_STMT_RESET:
		p.stmts.setLongData(ps, false)
	}
	if b == nil {
		var err error
		if b, err = p.primaryConn(ctx); err != nil {
			return err
		}
	}
	res, _, err := p.forwardCommand(ctx, &command{pkt: pkt, ps: ps}, b, p.primaryConn)
	if err == nil && (cmd == mysql.COM_STMT_RESET || cmd == mysql.COM_STMT_FETCH && res.OK.Status&mysql.SERVER_STATUS_LAST_ROW_SEND != 0) {
		p.stmts.setCursor(ps, false)
	}
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
	// The server's statement stays prepared on each connection for whoever
	// prepares the same text next; a cursor it has open is closed.
	if ps.cursor && ps.last != nil {
		if st := ps.last.stmts.get(ps.key); st != nil {
			reset := []byte{mysql.COM_STMT_RESET, 0, 0, 0, 0}
			setStmtID(reset, st.id)
			if err := ps.last.command(reset); err != nil {
				p.log.Debug("closing a cursor failed", "server", ps.last.Server, "err", err)
			}
		}
	}
	p.stmts.setCursor(ps, false)
	p.stmts.setLongData(ps, false)
}

// stmtKey is the key of a statement prepared now: the text, and the schema,
// sql_mode and character set that decide what it means.
func (p *processor) stmtKey(query string) string {
	vars := p.state.vars
	return query + "\x00" + p.state.db + "\x00" + vars["@@sql_mode"].literal + "\x00" + vars["@@character_set_client"].literal
}

// closeStatement closes a statement on b; COM_STMT_CLOSE has no answer, and
// a connection that fails here fails at its next command.
func closeStatement(b *BackendConn, id uint32) {
	out := []byte{mysql.COM_STMT_CLOSE, 0, 0, 0, 0}
	setStmtID(out, id)
	_ = b.PacketIO().SendCommand(out)
}
