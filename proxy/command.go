package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/router"
)

// This file is the path of one client command: dispatch by command, then
// for statements (COM_QUERY, COM_STMT_EXECUTE) one pipeline: route, forward,
// recover from a lost connection, record.

// processor runs a session's commands against the servers: it knows what
// the session is (its state, transaction, prepared statements, temporary
// tables) and holds its connections to the servers. It belongs to the
// session's goroutine.
type processor struct {
	srv    *Server
	client *PacketIO
	log    *slog.Logger
	// sessionID is the session's id, what the client knows it by.
	sessionID uint32
	// user and caps are the client's login, as the filters and the relay
	// need them.
	user string
	caps uint32

	backends backendSet
	// trx is the open transaction, for transaction replay.
	trx trxLog
	// pinned, when set, says why every statement now goes to the primary.
	pinned string

	state SessionState
	lexer router.Lexer
	stmts preparedStmts
	// temps are the session's temporary tables, which live on the primary.
	temps map[string]struct{}
	// lastGTID is the GTID of the session's last write, for causal reads.
	lastGTID string

	// status holds the server status flags of the last OK or EOF.
	status uint16

	// What ties the session to its connections with pooling (release.go):
	// tableLocks from LOCK TABLES to UNLOCK TABLES; kept names the first
	// statement whose effect stays on its connection for the session's life;
	// previous: the last answer leaves something only its connection can
	// tell (warnings, affected rows, FOUND_ROWS()).
	tableLocks bool
	kept       string
	previous   bool
	// hold is why the session keeps its connections now (released: it
	// does not); dirty: a command failed part-way, so they hold unread
	// answers and are closed, never given back.
	hold  holdReason
	dirty bool

	// rec describes the command being answered, for the query log.
	rec queryRecord
	// running is the connection of the statement under way, for KILL.
	running running
	// tagBuf holds a statement tagged with the session (tagged).
	tagBuf []byte
	// rowsSum checksums an answer's rows for the query log
	// (genlog.result_checksums).
	rowsSum audit.RowsChecksum
}

func (p *processor) init(srv *Server, client *PacketIO, log *slog.Logger) {
	p.srv, p.client, p.log = srv, client, log
	p.backends = backendSet{srv: srv, log: log, state: &p.state, broken: map[string]bool{}, closing: p.stmts.forget}
}

func (p *processor) setLog(l *slog.Logger) { p.log, p.backends.log = l, l }

// setLogin sets who the connections to the servers log in as.
func (p *processor) setLogin(login Login) {
	p.user, p.caps = login.User, login.Capabilities
	p.backends.login = login
}

// connect opens the session's connection at login (readwritesplit: the
// primary; readconnroute: the server router.target chooses), so a bad schema
// or a refused account fails the login as it would directly. With pooling a
// login needs no connection: the client was checked against the accounts,
// and a schema is checked on a pooled connection when a server answers.
func (p *processor) connect(ctx context.Context) error {
	if p.pooling() {
		return p.connectPooled(ctx)
	}
	var err error
	if p.policy().Movable() {
		var b *BackendConn
		if b, err = p.backends.dialPrimary(ctx); err == nil {
			p.backends.primary = b
		}
	} else {
		var t router.Target
		if t, err = p.srv.router.ConnTarget(); err == nil {
			err = p.backends.connectTo(ctx, t)
		}
	}
	if err != nil {
		p.client.SendError(toSQLError(err))
		return err
	}
	p.status = p.backends.primary.Status
	return nil
}

// connectPooled checks a login's schema on a pooled connection to the
// primary. A server's refusal (no such schema, no access) fails the login;
// no primary at all does not: logins work while it is away.
func (p *processor) connectPooled(ctx context.Context) error {
	p.status = mysql.SERVER_STATUS_AUTOCOMMIT
	if p.state.db == "" {
		return nil
	}
	_, err := p.backends.primaryConn(ctx, true, false)
	var se *SQLError
	switch {
	case errors.As(err, &se):
		p.client.SendError(se)
		return err
	case err != nil:
		p.log.Info("schema not checked at login: no primary answered", "db", p.state.db, "err", err)
		return nil
	}
	p.backends.release()
	return nil
}

// pooling reports whether the session shares pooled connections: pooling
// on, and a policy that moves sessions (readconnroute keeps one connection).
func (p *processor) pooling() bool {
	return p.srv.cfg.Load().Pool.Pooled() && p.policy().Movable()
}

// holdFacts is what ties the session to its connections; idle: pool.idle_time
// passed without a command.
func (p *processor) holdFacts(idle bool) holdFacts {
	return holdFacts{
		mode: p.srv.cfg.Load().Pool.Mode, idle: idle,
		transaction: p.inTransaction(), temporaryTables: len(p.temps) > 0, tableLocks: p.tableLocks, kept: p.kept,
		cursor: p.stmts.cursors > 0, longData: p.stmts.longData > 0, pinned: p.pinned != "",
		ownConnection: !p.policy().Movable(), previous: p.previous,
	}
}

// settle gives the session's connections back to the pool when nothing of
// the session lives only on them (decideRelease).
func (p *processor) settle(idle bool) {
	if !p.srv.cfg.Load().Pool.Pooled() {
		p.hold = holdPoolOff // the common case, without gathering the facts
		return
	}
	p.hold = decideRelease(p.holdFacts(idle))
	if p.hold == released && !p.dirty && p.backends.holds() {
		p.backends.release()
	}
}

// releasesWhenIdle reports whether the session's connections go back to the
// pool once it has been idle for pool.idle_time.
func (p *processor) releasesWhenIdle() bool {
	return (p.hold == holdPrevious || p.hold == holdNotIdle) && p.backends.holds()
}

// end lets go of the session's connections: back to the pool when they
// hold nothing of it, else closed.
func (p *processor) end() {
	p.backends.closeAll(!p.dirty && decideRelease(p.holdFacts(true)) == released)
}

// policy is the routing policy in force.
func (p *processor) policy() router.Policy { return p.srv.router.Policy() }

// errReported means the client was already told of a failure in its own
// command; the session goes on.
var errReported = errors.New("error reported to the client")

// command is one client command on its way to a server.
type command struct {
	pkt []byte
	// ps is the prepared statement of an execute, fetch, reset or long
	// data: Sluice's statement id in pkt is replaced by the server's.
	ps *preparedStmt
	// prepareAs, for COM_STMT_PREPARE, is Sluice's id for the statement,
	// relayed in place of the server's.
	prepareAs uint32
	attempt
	// sent is what went to the server last.
	sent []byte
	// recovered is how the command got its answer after its connection was
	// lost (retryOnPrimary, retryOnNewPrimary or replayTransaction), when
	// it was.
	recovered    recovery
	hasRecovered bool
}

// attempt steers how a command runs and recovers; it travels with the
// command, not in the query log.
type attempt struct {
	// retryRead: the command is a read, safe to run again on a new
	// primary connection when the old one fails before answering.
	retryRead bool
	// replayOnLoss: a statement inside a transaction that may run again,
	// after the transaction is replayed, on another connection.
	replayOnLoss bool
	// holdDeadlock: a deadlock answer is held back from the client, for
	// the transaction to be replayed and the statement to run again.
	holdDeadlock bool
}

// statement is a COM_QUERY or COM_STMT_EXECUTE with what routing knows of it.
type statement struct {
	command
	text string
	st   router.Statement
	cl   *router.Class
}

// inTransaction is true while the primary's status says a transaction is
// open, or autocommit is off (the next statement opens one).
func (p *processor) inTransaction() bool {
	return p.status&mysql.SERVER_STATUS_IN_TRANS != 0 || p.status&mysql.SERVER_STATUS_AUTOCOMMIT == 0
}

// dispatch runs one client command.
func (p *processor) dispatch(ctx context.Context, pkt []byte) error {
	cmd := pkt[0]
	// Where a string literal ends depends on the session's sql_mode.
	p.lexer.NoBackslashEscapes = p.status&mysql.SERVER_STATUS_NO_BACKSLASH_ESCAPED != 0
	if p.status&mysql.SERVER_STATUS_IN_TRANS == 0 {
		p.trx.reset() // no transaction open: nothing to replay
	} else {
		switch cmd {
		case mysql.COM_QUERY, mysql.COM_STMT_PREPARE, mysql.COM_STMT_EXECUTE, mysql.COM_STMT_CLOSE:
		default: // the log holds statements and executes, nothing else
			p.trx.setUnreplayable()
		}
	}
	p.previous = false
	if cmd == mysql.COM_RESET_CONNECTION && p.pooling() {
		p.resetPooled()
		return nil
	}
	switch cmd {
	case mysql.COM_QUERY:
		return p.query(ctx, pkt)
	case mysql.COM_STMT_PREPARE:
		return p.prepareStmt(ctx, pkt)
	case mysql.COM_STMT_EXECUTE:
		return p.executeStmt(ctx, pkt)
	case mysql.COM_STMT_FETCH, mysql.COM_STMT_RESET, mysql.COM_STMT_SEND_LONG_DATA:
		return p.stmtFollowUp(ctx, pkt)
	case mysql.COM_STMT_CLOSE:
		p.closeStmt(pkt)
		return nil
	}
	b, err := p.primaryConn(ctx)
	if err != nil {
		return err
	}
	res, b, err := p.forwardCommand(ctx, &command{pkt: pkt}, b, p.primaryConn)
	if err != nil || res.Err != nil {
		return err
	}
	switch cmd {
	case mysql.COM_INIT_DB:
		p.state.setDB(string(pkt[1:]))
		b.db = p.state.db
	case mysql.COM_RESET_CONNECTION:
		p.resetState(p.state.db)
		// The server forgot the connection's variables and statements.
		b.synced, b.db, b.vars, b.multiStatements = p.state.version, p.state.db, nil, nil
		b.stmts = serverStmts{}
	case mysql.COM_SET_OPTION:
		if len(pkt) >= 3 {
			on := pkt[1] == 0 // MYSQL_OPTION_MULTI_STATEMENTS_ON
			p.state.multiStatements = &on
			p.state.version++
			b.synced, b.multiStatements = p.state.version, &on
		}
	}
	return nil
}

// resetPooled answers COM_RESET_CONNECTION with pooling: the session starts
// afresh, and a connection holding anything of it is closed (the server
// rolls back, drops and unlocks) rather than reset, so no state survives.
func (p *processor) resetPooled() {
	p.end()
	p.resetState(p.state.db)
	p.tableLocks, p.kept, p.status = false, "", mysql.SERVER_STATUS_AUTOCOMMIT
	p.client.Send(okPacket(0, 0, p.status, 0))
}

// query runs a COM_QUERY.
func (p *processor) query(ctx context.Context, pkt []byte) error {
	if !p.policy().Classifies() && p.srv.filters.Load().Len() == 0 {
		// No parsing on readconnroute's hot path; the query log and the
		// digests need only the fingerprint.
		b, err := p.primaryConn(ctx)
		if err != nil {
			return err
		}
		_, _, err = p.forwardCommand(ctx, &command{pkt: pkt}, b, p.primaryConn)
		if p.srv.genlog.Load() != nil || p.srv.digests.Load() != nil {
			text := string(pkt[1:])
			st := p.lexer.Lex(text)
			p.rec.setStmt(&st, text)
		}
		return err
	}
	text, pkt, st, cl, denied := p.statement(pkt)
	if denied {
		return nil
	}
	if p.pooling() {
		if isKill(&st) {
			if k, ok := parseKill(text); ok {
				p.rec.setStmt(&st, text)
				return p.kill(ctx, k)
			}
		}
		pkt = p.tagged(pkt)
	}
	inTrans := p.status&mysql.SERVER_STATUS_IN_TRANS != 0
	c := &statement{command: command{pkt: pkt, attempt: attempt{
		retryRead:    cl.Route == router.RouteReplica && !st.Multi,
		replayOnLoss: inTrans && !st.Multi && replayableKeyword(st.Keyword),
		holdDeadlock: !st.Multi && p.deadlockRetryable(st.Keyword),
	}}, text: text, st: st, cl: cl}
	return p.runStatement(ctx, c)
}

// tagged is a COM_QUERY that names the session in a leading comment: with
// pooling the servers' processlists and logs then show which session a
// connection serves now. The buffer is the processor's, reused.
func (p *processor) tagged(pkt []byte) []byte {
	p.tagBuf = append(p.tagBuf[:0], pkt[0])
	p.tagBuf = append(p.tagBuf, "/* sluice session "...)
	p.tagBuf = strconv.AppendUint(p.tagBuf, uint64(p.sessionID), 10)
	p.tagBuf = append(p.tagBuf, " */ "...)
	p.tagBuf = append(p.tagBuf, pkt[1:]...)
	if cap(p.tagBuf) > 1<<20 {
		defer func() { p.tagBuf = nil }() // a huge statement's buffer is not kept
	}
	return p.tagBuf
}

// runStatement is the pipeline of a COM_QUERY or COM_STMT_EXECUTE: route,
// forward, recover, record.
func (p *processor) runStatement(ctx context.Context, c *statement) error {
	d, b, err := p.route(ctx, c)
	if err != nil {
		return err
	}
	res, b, err := p.forwardCommand(ctx, &c.command, b, func(ctx context.Context) (*BackendConn, error) {
		_, b, err := p.route(ctx, c)
		return b, err
	})
	p.rec.setStmt(&c.st, c.text)
	if err != nil {
		return err
	}
	if c.hasRecovered {
		d.Reason = router.ReasonRetried
		if c.recovered == replayTransaction {
			d.Reason = router.ReasonReplayed
		}
	}
	if res.Held {
		d.Reason = router.ReasonDeadlockReplayed
		if res, err = p.retryDeadlock(b, c.sent, res.Err); err != nil {
			return err
		}
	}
	toPrimary := b == p.backends.primary
	p.srv.metrics.routed(toPrimary)
	detail := c.cl.Reason
	if d.Reason == router.ReasonPinned {
		detail = p.pinned
	}
	p.rec.setRoute(toPrimary, d.Reason, detail)
	var exec []byte
	if c.ps != nil && p.status&mysql.SERVER_STATUS_IN_TRANS != 0 && p.srv.cfg.Load().Recovery.TransactionReplay {
		exec = c.ps.withTypes(c.sent)
	}
	p.recordTrx(&c.st, c.cl, c.text, exec, b, res)
	return p.after(ctx, &c.st, c.cl, b, res)
}

// route decides where a statement goes (the policy's decision, carried out)
// and returns the connection it goes on.
func (p *processor) route(ctx context.Context, c *statement) (router.Decision, *BackendConn, error) {
	if c.ps != nil && c.ps.longData {
		b, err := p.primaryConn(ctx)
		return router.Decision{To: router.ToPrimary, Reason: router.ReasonLongData}, b, err
	}
	bs := &p.backends
	sit := router.Situation{
		InReadOnlyTransaction: bs.tx != nil,
		InTransaction:         p.inTransaction(),
		Pinned:                p.pinned != "",
		UsesTemporary:         p.usesTemporary(c.cl),
		HasLast:               bs.last != nil,
	}
	policy := p.policy()
	for {
		d := policy.Route(sit, c.st, c.cl)
		if d.Pin != "" {
			p.pin(d.Pin)
		}
		switch d.To {
		case router.ToTransaction:
			return d, bs.tx, nil
		case router.ToLast:
			return d, bs.last, nil
		case router.ToServer:
			if t, ok := p.srv.router.Server(d.Server); ok {
				if b, err := bs.conn(ctx, t); err == nil {
					return d, b, nil
				}
			}
			sit.ServerHintFailed = true
			continue
		case router.ToReplica:
			if b := bs.replicaConn(ctx, d.MaxLag); b != nil {
				if p.waitCausal(b) {
					return d, b, nil
				}
				d.Reason = router.ReasonCausalFellBack
			} else {
				d.Reason = router.ReasonNoUsableReplica
			}
			d.To = router.ToPrimary
		}
		b, err := p.primaryConn(ctx)
		return d, b, err
	}
}

// primaryConn is the session's connection to the primary, opened if needed
// (and, with a policy that moves sessions and no transaction open,
// following a primary that moved). The client is told when there is none.
func (p *processor) primaryConn(ctx context.Context) (*BackendConn, error) {
	bs := &p.backends
	before := bs.primary
	b, err := bs.primaryConn(ctx, p.policy().Movable() && !p.inTransaction(), len(p.temps) > 0)
	if err == nil {
		if b != before && b.pool == nil {
			// A pooled connection's flags are another session's; the
			// session's own are only ever taken from its answers.
			p.status = b.Status
		}
		return b, nil
	}
	var restore *errStateRestore
	switch {
	case errors.As(err, &restore):
		p.client.SendError(newSQLError(mysql.ER_UNKNOWN_ERROR, "Sluice: %v", restore))
		return nil, err
	case errors.Is(err, router.ErrNoPrimary):
		p.client.SendError(newSQLError(mysql.ER_UNKNOWN_ERROR, "Sluice: %v; retry when a primary is back", err))
	default:
		p.client.SendError(toSQLError(err))
	}
	return nil, errReported
}

// forwardCommand sends c to b and relays the answer. When b is lost before
// answering, the session recovers as decideRecovery says: a retry sends c
// to the primary, a replay replays the transaction and sends c where
// reroute says (each at most once). It returns the connection that answered.
func (p *processor) forwardCommand(ctx context.Context, c *command, b *BackendConn,
	reroute func(context.Context) (*BackendConn, error)) (Result, *BackendConn, error) {
	for {
		res, forwarded, err := p.forwardBound(b, c)
		switch {
		case err == nil:
			return res, b, nil
		case errors.Is(err, errReported):
			return res, b, err
		}
		next, err := p.recover(b, err, forwarded, &c.attempt)
		if err != nil {
			return res, b, err
		}
		c.recovered, c.hasRecovered = next, true
		if next == replayTransaction {
			c.replayOnLoss = false
			if err := p.replayLost(ctx); err != nil {
				return res, b, err
			}
			b, err = reroute(ctx)
		} else {
			c.retryRead = false
			b, err = p.primaryConn(ctx)
		}
		if err != nil {
			return res, b, err
		}
	}
}

// forwardBound sends c to b, a prepared statement's command with b's own
// statement id (prepared there first when needed).
func (p *processor) forwardBound(b *BackendConn, c *command) (Result, int, error) {
	c.sent = c.pkt
	if ps := c.ps; ps != nil {
		st, err := ps.on(b)
		if err != nil {
			return p.prepareFailed(b, err)
		}
		if c.pkt[0] == mysql.COM_STMT_EXECUTE {
			c.sent = ps.bindTypes(c.pkt, st)
			ps.last = b
		}
		setStmtID(c.sent, st.id)
	}
	return p.forward(b, c.sent, &c.attempt, c.prepareAs)
}

// prepareFailed ends a command whose statement could not be prepared on b:
// the server's refusal is its answer; a lost connection is recovered from.
func (p *processor) prepareFailed(b *BackendConn, err error) (Result, int, error) {
	var se *SQLError
	if !errors.As(err, &se) {
		return Result{}, 0, err
	}
	p.client.SendError(se)
	res := Result{Err: se}
	p.rec.server, p.rec.res = b.Server, res
	return res, 0, errReported
}

// forward sends one command to b and relays the answer to the client (a
// prepare's with the statement id prepareAs).
func (p *processor) forward(b *BackendConn, pkt []byte, a *attempt, prepareAs uint32) (Result, int, error) {
	rt := p.srv.router
	rt.Started(b.Server)
	defer rt.Finished(b.Server)
	r := relay{client: p.client, stmtID: prepareAs}
	// Inside a transaction that may be replayed, the rows are checksummed
	// as they are relayed, for the replay to compare.
	if (b == p.backends.primary || b == p.backends.tx) && p.inTransaction() && !p.trx.unreplayable && p.srv.cfg.Load().Recovery.TransactionReplay {
		r.sum = p.trx.startSum()
	}
	if g := p.srv.genlog.Load(); g != nil && g.WantsResultChecksums() && responseKindOf(pkt[0]) == respResultSets {
		p.rowsSum.Reset()
		r.rows = &p.rowsSum
	}
	if a.holdDeadlock && b == p.backends.primary {
		r.holdErr = mysql.ER_LOCK_DEADLOCK
	}
	pooled := b.pool != nil // only a pooled connection's statement is killed by Sluice
	if pooled {
		p.running.set(b)
	}
	res, forwarded, err := p.exchange(b, pkt, r)
	if pooled {
		p.running.set(nil)
	}
	p.rec.server, p.rec.res = b.Server, res
	if err == nil && res.StatusKnown {
		p.status = res.OK.Status
	}
	if res.OK.LastInsertID != 0 {
		p.state.lastInsertID, b.lastInsertID = res.OK.LastInsertID, res.OK.LastInsertID
	}
	return res, forwarded, err
}

// exchange sends one command to b and relays its answer through r, whose
// client is the session's or one that discards (a replay); forwarded counts
// the packets relayed before an error.
func (p *processor) exchange(b *BackendConn, pkt []byte, r relay) (res Result, forwarded int, err error) {
	r.deprecateEOF = p.caps&mysql.CLIENT_DEPRECATE_EOF != 0
	r.localInfile = p.caps&mysql.CLIENT_LOCAL_FILES != 0
	return b.exchange(pkt, r, p.srv.cfg.Load().BackendReadTimeout)
}

// recover carries out what decideRecovery says about b, lost under the
// current command with forwarded packets of its answer relayed. It returns
// the recovery when the command goes on (a retry or a replay), else the
// error that ends the command: errReported when the session goes on.
func (p *processor) recover(b *BackendConn, err error, forwarded int, a *attempt) (recovery, error) {
	if errors.Is(err, errClientGone) {
		return 0, err
	}
	f := p.lossFactsOf(b)
	f.readOnly, f.retryRead, f.replayable = p.trx.readOnly, a.retryRead, p.trxReplayable(a)
	if forwarded > 0 || errors.Is(err, errPartialPacket) {
		f.phase = duringAnswer
	}
	return p.carryOut(b, err, f)
}

// lostAfterAnswer carries out what decideRecovery says about b, lost while
// Sluice read something back after the client had its answer. stateLost:
// what the command set is unknown. A nil error means the session goes on.
func (p *processor) lostAfterAnswer(b *BackendConn, err error, stateLost bool) error {
	f := p.lossFactsOf(b)
	f.phase, f.stateLost = afterAnswer, stateLost
	_, err = p.carryOut(b, err, f)
	return err
}

// lossFactsOf is what the session knows of itself when b is lost.
func (p *processor) lossFactsOf(b *BackendConn) lossFacts {
	f := lossFacts{conn: lostReplica, inTransaction: p.inTransaction(), temporaryTables: len(p.temps) > 0,
		movable: p.policy().Movable()}
	switch b {
	case p.backends.primary:
		f.conn = lostPrimary
	case p.backends.tx:
		f.conn = lostTransactionReplica
	}
	return f
}

// carryOut does what decideRecovery says about the lost connection b.
func (p *processor) carryOut(b *BackendConn, err error, f lossFacts) (recovery, error) {
	r := decideRecovery(f)
	act := recoveryActs[r]
	p.log.Warn(act.log, "server", b.Server, "err", err)
	if act.tell {
		p.client.SendError(newSQLError(2013, "Lost connection to backend server '%s' (%s)%s: %v", b.Server, b.Addr, act.where, err))
	}
	switch r {
	case retryOnPrimary, retryOnNewPrimary, replayTransaction, reconnect:
		p.backends.lose(b)
		return r, nil
	case reportAndReconnect:
		p.backends.lose(b)
		return r, errReported
	}
	return r, fmt.Errorf("backend %s: %w", b.Server, err)
}

// recoveryActs says what carryOut logs and tells the client for each
// recovery.
var recoveryActs = [...]struct {
	log string
	// tell: the client gets error 2013 for its command, where says more.
	tell  bool
	where string
}{
	endSession:              {log: "backend connection failed; closing the session"},
	reportAndEnd:            {log: "backend connection failed; closing the session", tell: true},
	reportTransactionAndEnd: {log: "replica connection failed inside a read-only transaction; closing the session", tell: true, where: " inside a read-only transaction"},
	retryOnPrimary:          {log: "replica connection failed; retrying on the primary"},
	retryOnNewPrimary:       {log: "primary connection failed before answering a read; retrying on a new connection"},
	replayTransaction:       {log: "connection lost in a transaction; replaying it on another connection"},
	reportAndReconnect:      {log: "primary connection failed; the session reconnects at its next command", tell: true},
	reconnect:               {log: "primary connection failed after answering; the session reconnects at its next command"},
}

// replayableKeyword: a statement that, when its primary is lost before it
// answers, may run again on the next primary after its transaction is
// replayed. COMMIT, ROLLBACK and statements that commit implicitly (DDL)
// may have taken effect before the loss, so they are not.
func replayableKeyword(keyword string) bool {
	switch keyword { // upper-cased by the lexer
	case "SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "SET", "DO", "SAVEPOINT":
		return true
	}
	return false
}

// usesTemporary reports whether cl names one of the session's temporary tables.
func (p *processor) usesTemporary(cl *router.Class) bool {
	if len(p.temps) == 0 {
		return false
	}
	for _, t := range cl.Tables {
		if _, ok := p.temps[t]; ok {
			return true
		}
	}
	return false
}

// after updates the session from a statement's outcome on b.
func (p *processor) after(ctx context.Context, st *router.Statement, cl *router.Class, b *BackendConn, res Result) error {
	bs := &p.backends
	bs.last = b
	// What SHOW WARNINGS, ROW_COUNT() or FOUND_ROWS() would ask next is
	// known only to this connection.
	p.previous = res.Err != nil || res.OK.Warnings > 0 || cl.CalcFoundRows || !res.ResultSet && countsRows(cl)
	if res.Err == nil {
		switch st.Keyword {
		case "LOCK":
			p.tableLocks = true
		case "UNLOCK":
			p.tableLocks = false
		}
		if cl.Keeps != "" && p.kept == "" {
			p.kept = cl.Keeps
		}
	}
	if cl.LastInsertID && b.pool != nil {
		if err := p.readLastInsertID(b); err != nil {
			return err
		}
	}
	if b != bs.primary {
		if cl.Begin && cl.ReadOnly && res.Err == nil {
			bs.tx = b
		}
		if bs.tx == b && b.Status&mysql.SERVER_STATUS_IN_TRANS == 0 && !cl.Begin {
			bs.tx = nil
		}
		return nil
	}
	if res.Err != nil {
		return nil
	}
	if cl.IsWrite() && !p.inTransaction() && (p.srv.router.Config().CausalReads || p.genlogWantsGTID()) {
		if err := p.readGTID(b); err != nil {
			return err
		}
	}
	if cl.CreatesTemporary != "" {
		if p.temps == nil {
			p.temps = map[string]struct{}{}
		}
		if len(p.temps) < maxSessionVars {
			p.temps[cl.CreatesTemporary] = struct{}{}
		} else {
			p.pin("too many temporary tables")
		}
	}
	for _, t := range cl.Drops {
		delete(p.temps, t)
	}
	if cl.Route != router.RouteSession {
		return nil
	}
	if cl.UseDB != "" {
		p.state.setDB(cl.UseDB)
		b.db = p.state.db
	}
	return p.readback(b, cl)
}

// readback reads the values a session command set from the primary, so the
// replicas get exactly those values, whatever expression produced them.
func (p *processor) readback(b *BackendConn, cl *router.Class) error {
	names := make([]string, 0, len(cl.SysVars)+len(cl.UserVars))
	for _, v := range cl.SysVars {
		names = append(names, "@@"+v)
	}
	for _, v := range cl.UserVars {
		names = append(names, "@"+v)
	}
	if len(names) == 0 {
		return nil
	}
	row, err := b.queryRow(readbackSQL(names))
	if err != nil {
		var se *SQLError
		if errors.As(err, &se) {
			// A variable this server cannot read back: keep the session
			// on the primary rather than replay a guess.
			p.pin(fmt.Sprintf("cannot read back session state: %v", se))
			return nil
		}
		return p.lostAfterAnswer(b, fmt.Errorf("reading back session state: %w", err), true)
	}
	for i, name := range names {
		if !p.state.set(name, literal(row[i])) {
			p.pin("too many session variables")
			return nil
		}
	}
	b.applied(&p.state)
	b.owner, b.synced = &p.state, p.state.version
	return nil
}

// countsRows reports whether ROW_COUNT() after the statement counts rows it
// changed (DML, LOAD, CALL), rather than being 0 or -1.
func countsRows(cl *router.Class) bool {
	for _, k := range cl.Kinds {
		switch k {
		case router.KindInsert, router.KindUpdate, router.KindDelete, router.KindReplace, router.KindLoad, router.KindCall:
			return true
		}
	}
	return false
}

// readLastInsertID reads back what LAST_INSERT_ID() answers after a
// statement that may have set it (LAST_INSERT_ID(expr)), so the session's
// next pooled connection answers the same.
func (p *processor) readLastInsertID(b *BackendConn) error {
	row, err := b.queryRow("SELECT LAST_INSERT_ID()")
	if err != nil {
		var se *SQLError
		if errors.As(err, &se) {
			p.pin(fmt.Sprintf("cannot read back LAST_INSERT_ID(): %v", se))
			return nil
		}
		return p.lostAfterAnswer(b, fmt.Errorf("reading back LAST_INSERT_ID(): %w", err), true)
	}
	id, _ := strconv.ParseUint(row[0].Text, 10, 64)
	p.state.lastInsertID, b.lastInsertID = id, id
	return nil
}

// pin keeps the session on the primary from now on.
func (p *processor) pin(reason string) {
	if p.pinned == "" {
		p.pinned = reason
		p.log.Info("session pinned to the primary", "reason", reason)
	}
}

// resetState forgets the session's state after COM_RESET_CONNECTION and
// COM_CHANGE_USER: the primary was reset by the server; replica
// connections are closed, so they reopen clean.
func (p *processor) resetState(db string) {
	p.backends.reset()
	p.state.reset(db)
	p.stmts.reset()
	p.temps = nil
	p.pinned = ""
	p.tableLocks, p.kept = false, ""
}

// readGTID records the GTID of the session's last write, read from the
// primary after the transaction ended.
func (p *processor) readGTID(b *BackendConn) error {
	query := "SELECT @@SESSION.last_gtid"
	if !b.isMariaDB() {
		query = "SELECT @@GLOBAL.gtid_executed"
	}
	row, err := b.queryRow(query)
	if err != nil {
		p.lastGTID = "unknown"
		var se *SQLError
		if errors.As(err, &se) {
			p.log.Warn("reading the last GTID failed; causal reads go to the primary", "err", se)
			return nil
		}
		// The client has its answer: nothing may be written to it now.
		return p.lostAfterAnswer(b, fmt.Errorf("reading the last GTID: %w", err), false)
	}
	if !row[0].Null && row[0].Text != "" {
		// An unchanged value means the statement wrote nothing (an UPDATE
		// that matched no row); MySQL's answer is the whole executed set.
		if row[0].Text != p.lastGTID && b.isMariaDB() {
			p.rec.gtid = row[0].Text
		}
		p.lastGTID = row[0].Text
	}
	return nil
}

func (p *processor) genlogWantsGTID() bool {
	g := p.srv.genlog.Load()
	return g != nil && g.WantsGTID()
}

// waitCausal makes replica b wait for the session's last write. It reports
// false when the read must go to the primary instead.
func (p *processor) waitCausal(b *BackendConn) bool {
	cfg := p.srv.router.Config()
	if !cfg.CausalReads || p.lastGTID == "" || b.gtidSeen == p.lastGTID || b == p.backends.primary {
		return true
	}
	if p.lastGTID == "unknown" {
		return false
	}
	timeout := cfg.CausalReadsTimeout.Seconds()
	query := fmt.Sprintf("SELECT MASTER_GTID_WAIT(%s, %g)", quoteString(p.lastGTID), timeout)
	if !b.isMariaDB() {
		query = fmt.Sprintf("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %g)", quoteString(p.lastGTID), timeout)
	}
	row, err := b.queryRow(query)
	if err != nil || row[0].Text != "0" {
		if err != nil {
			p.log.Warn("waiting for a GTID on a replica failed", "server", b.Server, "err", err)
			p.backends.lose(b)
		}
		return false
	}
	b.gtidSeen = p.lastGTID
	return true
}
