package proxy

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/router"
)

// errReplicaLost means a replica, or for a read the primary's connection,
// failed before answering; the command is retried on the primary (anew).
var errReplicaLost = errors.New("replica connection lost")

// decision is where one command goes and why.
type decision struct {
	backend *BackendConn
	reason  string
}

// inTransaction is true while the primary's status says a transaction is
// open, or autocommit is off (the next statement opens one).
func (s *Session) inTransaction() bool {
	return s.status&mysql.SERVER_STATUS_IN_TRANS != 0 || s.status&mysql.SERVER_STATUS_AUTOCOMMIT == 0
}

// dispatch routes one command and relays its answer.
func (s *Session) dispatch(ctx context.Context, pkt []byte) error {
	cmd := pkt[0]
	if s.status&mysql.SERVER_STATUS_IN_TRANS == 0 {
		s.trx.reset() // no transaction open: nothing to replay
	} else {
		switch cmd {
		case mysql.COM_QUERY, mysql.COM_STMT_PREPARE, mysql.COM_STMT_EXECUTE, mysql.COM_STMT_CLOSE:
		default: // the log holds statements and executes, nothing else
			s.trx.setUnreplayable()
		}
	}
	switch cmd {
	case mysql.COM_QUERY:
		return s.query(ctx, pkt)
	case mysql.COM_STMT_PREPARE:
		return s.prepareStmt(ctx, pkt)
	case mysql.COM_STMT_EXECUTE, mysql.COM_STMT_FETCH, mysql.COM_STMT_RESET, mysql.COM_STMT_SEND_LONG_DATA:
		return s.stmtCommand(ctx, pkt)
	case mysql.COM_STMT_CLOSE:
		s.closeStmt(pkt)
		return nil
	case mysql.COM_INIT_DB:
		b, err := s.primaryConn(ctx)
		if err != nil {
			return err
		}
		res, err := s.forward(b, pkt)
		if err == nil && res.Err == nil {
			s.state.setDB(string(pkt[1:]))
			b.db = s.state.db
		}
		return err
	case mysql.COM_RESET_CONNECTION:
		b, err := s.primaryConn(ctx)
		if err != nil {
			return err
		}
		res, err := s.forward(b, pkt)
		if err == nil && res.Err == nil {
			s.resetState(s.state.db)
			b.synced, b.db = s.state.version, s.state.db
		}
		return err
	case mysql.COM_SET_OPTION:
		b, err := s.primaryConn(ctx)
		if err != nil {
			return err
		}
		res, err := s.forward(b, pkt)
		if err == nil && res.Err == nil && len(pkt) >= 3 {
			on := pkt[1] == 0 // MYSQL_OPTION_MULTI_STATEMENTS_ON
			s.state.multiStatements = &on
			s.state.version++
			b.synced = s.state.version
		}
		return err
	}
	b, err := s.primaryConn(ctx)
	if err != nil {
		return err
	}
	_, err = s.forward(b, pkt)
	return err
}

// query routes a COM_QUERY by its class.
func (s *Session) query(ctx context.Context, pkt []byte) error {
	rcr := s.srv.router.Config().Type == "readconnroute"
	if rcr && s.srv.filters.Load().Len() == 0 {
		// No parsing on readconnroute's hot path; the query log and the
		// digests need only the fingerprint.
		b, err := s.primaryConn(ctx)
		if err != nil {
			return err
		}
		_, err = s.forward(b, pkt)
		if s.srv.genlog.Load() != nil || s.srv.digests.Load() != nil {
			text := string(pkt[1:])
			st := s.lexer.Lex(text)
			s.cur.setStmt(&st, text)
		}
		return err
	}
	text, pkt, st, cl, denied := s.statement(pkt)
	if denied {
		return nil
	}
	if rcr {
		b, err := s.primaryConn(ctx)
		if err != nil {
			return err
		}
		_, err = s.forward(b, pkt)
		s.cur.setStmt(&st, text)
		return err
	}
	d, err := s.route(ctx, &st, cl)
	if err != nil {
		return err
	}
	s.cur.retryRead = cl.Route == router.RouteReplica && !st.Multi
	s.cur.replayOnLoss = s.status&mysql.SERVER_STATUS_IN_TRANS != 0 && !st.Multi && replayableKeyword(st.Keyword)
	s.cur.holdDeadlock = !st.Multi && s.deadlockRetryable(st.Keyword)
	res, err := s.forward(d.backend, pkt)
	if errors.Is(err, errReplicaLost) {
		s.cur.retryRead = false // once
		if d.backend, err = s.primaryConn(ctx); err != nil {
			return err
		}
		d.reason = "retried after a lost connection"
		res, err = s.forward(d.backend, pkt)
	}
	if errors.Is(err, errTransactionLost) {
		if err := s.replayLost(ctx); err != nil {
			return err
		}
		if d, err = s.route(ctx, &st, cl); err != nil {
			return err
		}
		d.reason = "transaction replayed on another server"
		res, err = s.forward(d.backend, pkt)
	}
	if err == nil && res.Held {
		d.reason = "transaction replayed after a deadlock"
		res, err = s.retryDeadlock(d.backend, pkt, res.Err)
	}
	if err != nil {
		return err
	}
	s.srv.metrics.routed(d.backend == s.primary)
	s.cur.setStmt(&st, text)
	s.cur.setRoute(d.backend == s.primary, d.reason)
	s.recordTrx(&st, cl, text, nil, d.backend, res)
	return s.after(ctx, &st, cl, d.backend, res)
}

// route decides where a statement of class cl goes.
func (s *Session) route(ctx context.Context, st *router.Statement, cl *router.Class) (decision, error) {
	primary := func(reason string) (decision, error) {
		b, err := s.primaryConn(ctx)
		return decision{backend: b, reason: reason}, err
	}
	if s.txBackend != nil {
		return decision{backend: s.txBackend, reason: "read-only transaction"}, nil
	}
	if s.inTransaction() {
		return primary("transaction")
	}
	if s.pinned != "" {
		return primary(s.pinned)
	}
	if st.Multi && mayChangeSession(st.Fingerprint) {
		// Its statements are not classified one by one: keep everything
		// where its effects are.
		s.pinned = "multi-statement changed session state"
		s.log.Info("session pinned to the primary", "reason", s.pinned)
		return primary(s.pinned)
	}
	switch st.Hint.Route {
	case "primary":
		return primary("hint")
	case "server":
		if t, ok := s.srv.router.Server(st.Hint.Server); ok {
			if b, err := s.conn(ctx, t); err == nil {
				return decision{backend: b, reason: "hint"}, nil
			}
		}
	}
	route := cl.Route
	if st.Hint.Route == "replica" && route == router.RoutePrimary && st.Keyword == "SELECT" &&
		cl.Reason != "locking read" && cl.Reason != "select into" {
		// The application vouches for this read; a hint never sends a
		// write or a lock to a replica.
		route = router.RouteReplica
	}
	switch route {
	case router.RouteReplica:
		if s.usesTemporary(cl) {
			return primary("temporary table")
		}
		var maxLag time.Duration
		if st.Hint.MaxLag != "" {
			maxLag, _ = time.ParseDuration(st.Hint.MaxLag)
		}
		if b := s.replicaConn(ctx, maxLag); b != nil {
			if s.waitCausal(b) {
				return decision{backend: b, reason: cl.Reason}, nil
			}
			return primary("causal read fell back")
		}
		return primary("no usable replica")
	case router.RouteLast:
		if s.last != nil {
			return decision{backend: s.last, reason: cl.Reason}, nil
		}
	}
	return primary(cl.Reason)
}

// replayLost replays the transaction whose primary connection was lost
// before the current command answered; when it cannot be, the client is
// told to retry the transaction.
func (s *Session) replayLost(ctx context.Context) error {
	s.cur.replayOnLoss = false // once
	if err := s.replayTransaction(ctx); err != nil {
		s.writeErr(newSQLError(mysql.ER_LOCK_DEADLOCK, "Sluice: the transaction was lost with its server connection and could not be replayed: %v; retry the transaction", err))
		return errReported
	}
	return nil
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

// mayChangeSession is a conservative test of a multi-statement's text.
func mayChangeSession(fingerprint string) bool {
	up := strings.ToUpper(fingerprint)
	for _, kw := range []string{"SET", "USE", "TEMPORARY", "PREPARE", "INTO @", ":="} {
		if strings.Contains(up, kw) {
			return true
		}
	}
	return false
}

// usesTemporary reports whether cl names one of the session's temporary tables.
func (s *Session) usesTemporary(cl *router.Class) bool {
	if len(s.temps) == 0 {
		return false
	}
	for _, t := range cl.Tables {
		if _, ok := s.temps[t]; ok {
			return true
		}
	}
	return false
}

// after updates the session from a statement's outcome.
func (s *Session) after(ctx context.Context, st *router.Statement, cl *router.Class, b *BackendConn, res Result) error {
	s.last = b
	if b != s.primary {
		if cl.Begin && cl.ReadOnly && res.Err == nil {
			s.txBackend = b
		}
		if s.txBackend == b && b.Status&mysql.SERVER_STATUS_IN_TRANS == 0 && !cl.Begin {
			s.txBackend = nil
		}
		return nil
	}
	if res.Err != nil {
		return nil
	}
	if cl.Reason == "write" && !s.inTransaction() && (s.srv.router.Config().CausalReads || s.genlogWantsGTID()) {
		if err := s.readGTID(b); err != nil {
			return err
		}
	}
	if cl.CreatesTemporary != "" {
		if s.temps == nil {
			s.temps = map[string]struct{}{}
		}
		if len(s.temps) < maxSessionVars {
			s.temps[cl.CreatesTemporary] = struct{}{}
		} else {
			s.pin("too many temporary tables")
		}
	}
	for _, t := range cl.Drops {
		delete(s.temps, t)
	}
	if cl.Route != router.RouteSession {
		return nil
	}
	if cl.UseDB != "" {
		s.state.setDB(cl.UseDB)
		b.db = s.state.db
	}
	return s.readback(b, cl)
}

// readback reads the values a session command set from the primary, so the
// replicas get exactly those values, whatever expression produced them.
func (s *Session) readback(b *BackendConn, cl *router.Class) error {
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
			s.pin(fmt.Sprintf("cannot read back session state: %v", se))
			return nil
		}
		// The client has its answer; the state it set is unknown, so no
		// other connection can take this one's place.
		s.log.Warn("backend connection failed reading back session state; closing the session", "server", b.Server, "err", err)
		return fmt.Errorf("backend %s: %w", b.Server, err)
	}
	for i, name := range names {
		if !s.state.set(name, literal(row[i])) {
			s.pin("too many session variables")
			return nil
		}
	}
	b.synced = s.state.version
	return nil
}

// pin keeps the session on the primary from now on.
func (s *Session) pin(reason string) {
	if s.pinned == "" {
		s.pinned = reason
		s.log.Info("session pinned to the primary", "reason", reason)
	}
}

// forward sends one command to b and relays the answer to the client.
func (s *Session) forward(b *BackendConn, pkt []byte) (Result, error) {
	rt := s.srv.router
	rt.Started(b.Server)
	defer rt.Finished(b.Server)
	// Inside a transaction that may be replayed, the rows are checksummed
	// as they are relayed, for the replay to compare.
	var sum *maphash.Hash
	if (b == s.primary || b == s.txBackend) && s.inTransaction() && !s.trx.unreplayable && s.srv.cfg.Load().Recovery.TransactionReplay {
		sum = s.trx.startSum()
	}
	var hold uint16
	if s.cur.holdDeadlock && b == s.primary {
		hold = mysql.ER_LOCK_DEADLOCK
	}
	res, forwarded, err := s.exchange(b, pkt, s.client, sum, hold)
	s.cur.server, s.cur.res = b.Server, res
	if err != nil {
		return res, s.backendFailed(b, err, forwarded)
	}
	if res.StatusKnown {
		s.status = res.OK.Status
	}
	return res, nil
}

// exchange sends one command to b and relays its answer to client (the
// session's, or one that discards it when a transaction is replayed),
// checksumming result set rows into sum when it is set, and holding back an
// answer that is error hold alone. forwarded counts the packets relayed
// before an error.
func (s *Session) exchange(b *BackendConn, pkt []byte, client *PacketIO, sum *maphash.Hash, hold uint16) (res Result, forwarded int, err error) {
	bio := b.PacketIO()
	bio.ResetSequence()
	if t := s.srv.cfg.Load().BackendReadTimeout; t > 0 {
		// The connection is closed if this fires: its stream is lost.
		_ = bio.Conn().SetReadDeadline(time.Now().Add(t))
		defer bio.Conn().SetReadDeadline(time.Time{})
	}
	kind := responseKindOf(pkt[0])
	err = bio.WritePacket(pkt)
	switch {
	case err != nil:
	case kind == respNone:
		err = bio.Flush()
	default:
		err = bio.FlushAwait()
	}
	if err != nil {
		return Result{}, 0, err
	}
	r := relay{
		backend:      bio,
		client:       client,
		deprecateEOF: s.caps&mysql.CLIENT_DEPRECATE_EOF != 0,
		localInfile:  s.caps&mysql.CLIENT_LOCAL_FILES != 0,
		holdErr:      hold,
	}
	if sum != nil {
		r.sum = sum // a nil *maphash.Hash would be a non-nil io.Writer
	}
	res, err = r.run(kind)
	if sum != nil && res.ResultSet {
		res.RowsSum = sum.Sum64()
	}
	if err != nil {
		return res, r.forwarded, err
	}
	if res.StatusKnown {
		b.Status = res.OK.Status
	}
	return res, r.forwarded, nil
}

// errReported means the client was already told of a failure in its own
// command; the session goes on.
var errReported = errors.New("error reported to the client")

// primaryConn is the session's connection to the primary, opened if needed.
// When the primary role moved (failover, switchover) and no transaction is
// open, the session follows it, carrying its state over.
func (s *Session) primaryConn(ctx context.Context) (*BackendConn, error) {
	rw := s.srv.router.Config().Type == "readwritesplit"
	if s.primary != nil && (!rw || s.inTransaction()) {
		return s.primary, nil
	}
	t, err := s.srv.router.Primary()
	if s.primary != nil {
		if err == nil && t.Server == s.primary.Server {
			return s.primary, nil
		}
		if err != nil && len(s.temps) > 0 {
			// The session's temporary tables live there: it stays, and
			// learns from its next statement whether the server is gone.
			return s.primary, nil
		}
		if err == nil {
			s.log.Info("primary moved; the session follows", "from", s.primary.Server, "to", t.Server)
		}
		// Moved, or down or turned read only (a switchover) with no other
		// known yet: dialPrimary waits for the next primary rather than the
		// session failing on a dead or read-only connection.
		s.dropPrimary()
	}
	b, err := s.dialPrimary(ctx)
	if err != nil {
		if errors.Is(err, router.ErrNoPrimary) {
			s.writeErr(newSQLError(mysql.ER_UNKNOWN_ERROR, "Sluice: %v; retry when a primary is back", err))
		} else {
			s.writeErr(toSQLError(err))
		}
		return nil, errReported
	}
	if err := s.sync(b); err != nil {
		b.QuitAndClose()
		s.srv.metrics.backendConns.Dec()
		s.writeErr(newSQLError(mysql.ER_UNKNOWN_ERROR, "Sluice: restoring session state on %s failed: %v", b.Server, err))
		return nil, err
	}
	s.primary = b
	s.status = b.Status
	return b, nil
}

// dialPrimary connects to the primary. With router.primary_wait, a primary
// not known yet (a failover under way) or refusing connections (down, and the
// monitor has not seen it yet) is waited for: Sluice tries again each time the
// monitor has looked at the servers, until primary_wait is over. An error the
// server sends (access denied, too many connections) is returned at once.
func (s *Session) dialPrimary(ctx context.Context) (*BackendConn, error) {
	r, m := s.srv.router, s.srv.metrics
	wait := s.srv.cfg.Load().Recovery.PrimaryWait
	var deadline time.Time // set at the first wait
	defer func() {
		if !deadline.IsZero() {
			m.primaryWaiting.Dec()
		}
	}()
	for {
		changed := r.Changed() // before the snapshot is read: no publish is missed
		t, err := r.Primary()
		if err == nil {
			var b *BackendConn
			if b, err = s.dial(ctx, t); err == nil {
				return b, nil
			}
		}
		var se *SQLError
		if wait <= 0 || errors.As(err, &se) {
			return nil, err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(wait)
			m.primaryWaiting.Inc()
		}
		timer := time.NewTimer(time.Until(deadline))
		select {
		case <-changed:
			timer.Stop()
			continue
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
		}
		m.primaryWaitTimeouts.Inc()
		return nil, fmt.Errorf("%w (waited router.primary_wait, %v)", err, wait)
	}
}

// dropPrimary closes the session's primary connection.
func (s *Session) dropPrimary() {
	if s.primary == nil {
		return
	}
	s.forgetStatements(s.primary)
	if s.last == s.primary {
		s.last = nil
	}
	s.primary.QuitAndClose()
	s.srv.metrics.backendConns.Dec()
	s.primary = nil
}

// replicaConn returns an up-to-date connection to a usable replica, or nil
// when there is none: then the primary serves the read.
func (s *Session) replicaConn(ctx context.Context, maxLag time.Duration) *BackendConn {
	rt := s.srv.router
	limit := rt.Config().MaxReplicaConnections
	for range 3 {
		atLimit := limit > 0 && len(s.replicas) >= limit
		t, ok := rt.Replica(maxLag, func(name string) bool {
			// At router.max_replica_connections, only servers already open.
			return s.broken[name] || (atLimit && s.replicas[name] == nil && !s.isPrimary(name))
		}, s.lastReplica)
		if !ok && atLimit {
			// None of those is usable now (drained, lagging): close them to
			// make room for one that is.
			if t, ok = rt.Replica(maxLag, func(name string) bool { return s.broken[name] }, ""); ok {
				for _, b := range s.replicas {
					s.dropReplica(b)
				}
			}
		}
		if !ok {
			return nil
		}
		b, err := s.conn(ctx, t)
		if err == nil {
			s.lastReplica = t.Server
			return b
		}
	}
	return nil
}

// isPrimary reports whether the session's primary connection is to name.
func (s *Session) isPrimary(name string) bool { return s.primary != nil && s.primary.Server == name }

// conn returns the session's connection to t, opening and syncing it.
func (s *Session) conn(ctx context.Context, t router.Target) (*BackendConn, error) {
	if s.isPrimary(t.Server) {
		return s.primary, nil
	}
	b := s.replicas[t.Server]
	if b == nil {
		var err error
		if b, err = s.dial(ctx, t); err != nil {
			s.broken[t.Server] = true
			s.log.Warn("replica connection failed; reads go elsewhere", "server", t.Server, "err", err)
			return nil, err
		}
		if s.replicas == nil {
			s.replicas = map[string]*BackendConn{}
		}
		s.replicas[t.Server] = b
	}
	if err := s.sync(b); err != nil {
		s.dropReplica(b)
		s.broken[t.Server] = true
		s.log.Warn("replaying session state on a replica failed; closed that connection for this session",
			"server", t.Server, "err", err)
		return nil, err
	}
	return b, nil
}

// sync brings a replica connection to the session's current state.
func (s *Session) sync(b *BackendConn) error {
	if b.synced == s.state.version {
		return nil
	}
	if sql := s.state.replaySQL(b.synced); sql != "" {
		if err := b.command(commandPacket(mysql.COM_QUERY, sql)); err != nil {
			return fmt.Errorf("replay variables: %w", err)
		}
	}
	if b.db != s.state.db && s.state.db != "" {
		if err := b.command(commandPacket(mysql.COM_INIT_DB, s.state.db)); err != nil {
			return fmt.Errorf("replay schema: %w", err)
		}
		b.db = s.state.db
	}
	if ms := s.state.multiStatements; ms != nil && (b.multiStatements == nil || *b.multiStatements != *ms) {
		opt := byte(1)
		if *ms {
			opt = 0
		}
		if err := b.command([]byte{mysql.COM_SET_OPTION, opt, 0}); err != nil {
			return fmt.Errorf("replay set option: %w", err)
		}
		b.multiStatements = ms
	}
	b.synced = s.state.version
	return nil
}

// dial logs in to t as the session's user.
func (s *Session) dial(ctx context.Context, t router.Target) (*BackendConn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.srv.cfg.Load().ConnectTimeout)
	defer cancel()
	login := Login{
		User: s.user, Stage1: s.stage1, DB: s.state.db,
		Capabilities: s.caps, Collation: s.collation, Attrs: s.attrs,
	}
	if bt := s.srv.cfg.Load().BackendTLS; bt != nil {
		login.TLS = bt
		if bt.ServerName == "" {
			// Verify the certificate against the host Sluice dials.
			login.TLS = bt.Clone()
			login.TLS.ServerName, _, _ = net.SplitHostPort(t.Address)
		}
	}
	b, err := DialBackend(ctx, t.Server, t.Address, login)
	if err != nil {
		return nil, err
	}
	b.db = s.state.db
	s.srv.metrics.backendConns.Inc()
	return b, nil
}

func (s *Session) dropReplica(b *BackendConn) {
	delete(s.replicas, b.Server)
	s.forgetStatements(b)
	if s.last == b {
		s.last = nil
	}
	if s.txBackend == b {
		s.txBackend = nil
	}
	b.QuitAndClose()
	s.srv.metrics.backendConns.Dec()
}

// closeBackends closes every backend connection of the session.
func (s *Session) closeBackends() {
	for _, b := range s.replicas {
		s.dropReplica(b)
	}
	s.dropPrimary()
	s.last, s.txBackend = nil, nil
}

// resetState forgets the session's state after COM_RESET_CONNECTION: the
// primary was reset by the server; replica connections are closed, so
// they reopen clean.
func (s *Session) resetState(db string) {
	for _, b := range s.replicas {
		s.dropReplica(b)
	}
	s.state.reset(db)
	s.stmts = nil
	s.temps = nil
	s.pinned = ""
	s.broken = map[string]bool{}
	s.txBackend = nil
}

// readGTID records the GTID of the session's last write, read from the
// primary after the transaction ended.
func (s *Session) readGTID(b *BackendConn) error {
	query := "SELECT @@SESSION.last_gtid"
	if !b.isMariaDB() {
		query = "SELECT @@GLOBAL.gtid_executed"
	}
	row, err := b.queryRow(query)
	if err != nil {
		var se *SQLError
		if errors.As(err, &se) {
			s.log.Warn("reading the last GTID failed; causal reads go to the primary", "err", se)
			s.lastGTID = "unknown"
			return nil
		}
		// The client has its answer: nothing may be written to it now.
		s.lastGTID = "unknown"
		if !s.inTransaction() && len(s.temps) == 0 && s.srv.router.Config().Type == "readwritesplit" {
			s.log.Warn("primary connection failed reading the last GTID; the session reconnects at its next command", "server", b.Server, "err", err)
			s.dropPrimary()
			return nil
		}
		s.log.Warn("backend connection failed reading the last GTID; closing the session", "server", b.Server, "err", err)
		return fmt.Errorf("backend %s: %w", b.Server, err)
	}
	if !row[0].Null && row[0].Text != "" {
		// An unchanged value means the statement wrote nothing (an UPDATE
		// that matched no row); MySQL's answer is the whole executed set.
		if row[0].Text != s.lastGTID && b.isMariaDB() {
			s.cur.gtid = row[0].Text
		}
		s.lastGTID = row[0].Text
	}
	return nil
}

func (s *Session) genlogWantsGTID() bool {
	g := s.srv.genlog.Load()
	return g != nil && g.WantsGTID()
}

// waitCausal makes replica b wait for the session's last write. It reports
// false when the read must go to the primary instead.
func (s *Session) waitCausal(b *BackendConn) bool {
	cfg := s.srv.router.Config()
	if !cfg.CausalReads || s.lastGTID == "" || b.gtidSeen == s.lastGTID || b == s.primary {
		return true
	}
	if s.lastGTID == "unknown" {
		return false
	}
	timeout := cfg.CausalReadsTimeout.Seconds()
	query := fmt.Sprintf("SELECT MASTER_GTID_WAIT(%s, %g)", quoteString(s.lastGTID), timeout)
	if !b.isMariaDB() {
		query = fmt.Sprintf("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %g)", quoteString(s.lastGTID), timeout)
	}
	row, err := b.queryRow(query)
	if err != nil || row[0].Text != "0" {
		if err != nil {
			s.log.Warn("waiting for a GTID on a replica failed", "server", b.Server, "err", err)
			s.broken[b.Server] = true
			s.dropReplica(b)
		}
		return false
	}
	b.gtidSeen = s.lastGTID
	return true
}

// routeLabel is the query log's route field: where, and why.
func routeLabel(toPrimary bool, reason string) string {
	if toPrimary {
		return "primary: " + reason
	}
	return "replica: " + reason
}
