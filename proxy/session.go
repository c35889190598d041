package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/router"
)

// Session is one client connection and the backend connection it uses.
type Session struct {
	srv      *Server
	id       uint32
	client   *PacketIO
	clientIP string
	log      *slog.Logger

	caps      uint32
	collation byte
	attrs     []byte
	scramble  []byte
	user      string
	db        string
	// admitted is the user counted against max_user_connections.
	admitted string
	// tls is true once the client connection is TLS.
	tls bool
	// stage1 is SHA1(password): the secret backend logins are made with. It
	// is never logged.
	stage1 []byte

	// primary is the connection writes go to (with readconnroute, the
	// session's one connection); replicas are opened as reads need them.
	primary  *BackendConn
	replicas map[string]*BackendConn
	// last ran the previous statement; txBackend holds a read-only
	// transaction open on a replica.
	last, txBackend *BackendConn
	// lastReplica names the replica the previous read went to; the router
	// keeps reads there while it is not busier than the others.
	lastReplica string
	// lastRoute caches the route label of the last logged command.
	lastRoute routeLabelCache
	// trx is the open transaction, for router.transaction_replay.
	trx trxLog
	// broken names servers whose connection failed for this session.
	broken map[string]bool
	// pinned, when set, says why every statement now goes to the primary.
	pinned string

	state      SessionState
	lexer      router.Lexer
	stmts      map[uint32]*preparedStmt
	nextStmtID uint32
	// temps are the session's temporary tables, which live on the primary.
	temps map[string]struct{}
	// lastGTID is the GTID of the session's last write, for causal reads.
	lastGTID string

	// status holds the server status flags of the last OK or EOF.
	status uint16

	// idle is true while the session waits for a command outside a
	// transaction: a draining server may close it then.
	idle atomic.Bool

	// cur describes the command being answered, for the query log.
	cur        commandInfo
	started    time.Time
	statements int64
	logSess    audit.Session
	// view and statementCount are what the admin API reads.
	view           atomic.Pointer[SessionInfo]
	statementCount atomic.Int64
}

// commandInfo is what the query log needs of one command.
type commandInfo struct {
	server string
	route  string
	res    Result
	// stmt is valid with hasStmt; held by value, so that recording it
	// allocates nothing.
	stmt    router.Statement
	hasStmt bool
	text    string
	// routePrimary and reason make the route label, built only when the
	// query log asks (route, when set, overrides).
	routed       bool
	routePrimary bool
	reason       string
	// original is the client's text when a filter rewrote it.
	original string
	// detected says which detect-only filter would have refused it, and why.
	detected string
	// params are an execute's parameters, when the query log wants them.
	params []audit.Param
	// gtid is the GTID the statement committed, when known.
	gtid string
	// retryRead: the command is a read, safe to run again on a new
	// primary connection when the old one fails before answering.
	retryRead bool
	// replayOnLoss: a statement inside a transaction that may run again,
	// after the transaction is replayed, on a new primary.
	replayOnLoss bool
	// holdDeadlock: a deadlock answer is held back from the client, for
	// the transaction to be replayed and the statement to run again.
	holdDeadlock bool
}

func newSession(srv *Server, conn net.Conn) *Session {
	id := srv.nextID.Add(1)
	host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
	s := &Session{
		srv:      srv,
		id:       id,
		client:   NewPacketIO(conn),
		clientIP: host,
		log:      srv.log.With("session", id, "client", conn.RemoteAddr().String()),
		broken:   map[string]bool{},
	}
	s.client.SetMaxPayload(srv.cfg.Load().MaxAllowedPacket)
	return s
}

// refuse answers a connection that will not get a session, in place of the
// handshake, as MySQL does for "Too many connections".
func (s *Session) refuse(e *SQLError) {
	defer s.client.Close()
	_ = s.client.WritePacket(errPacket(e))
	_ = s.client.Flush()
	s.log.Warn("connection refused", "code", e.Code, "reason", e.Message)
}

func (s *Session) run(ctx context.Context) {
	m := s.srv.metrics
	m.sessions.Inc()
	defer m.sessions.Dec()
	defer s.close()
	s.started = time.Now()
	if g := s.srv.genlog.Load(); g != nil {
		g.LogConnect(s.logSession(), s.started)
	}
	err := s.handshake(ctx)
	if g := s.srv.genlog.Load(); g != nil && s.user != "" {
		a := audit.Auth{Time: time.Now(), OK: err == nil, Plugin: mysql.AUTH_NATIVE_PASSWORD, TLS: s.tls}
		var se *SQLError
		if errors.As(err, &se) {
			a.ErrorCode = se.Code
		}
		g.LogAuth(s.logSession(), &a)
	}
	if err != nil {
		s.logEnd("login failed", err)
		return
	}
	defer func() {
		if g := s.srv.genlog.Load(); g != nil {
			now := time.Now()
			g.LogQuit(s.logSession(), now, now.Sub(s.started), s.statements)
		}
	}()
	s.log = s.log.With("user", s.user)
	s.log.Debug("session started", "db", s.db)
	s.publish()
	err = s.loop(ctx)
	s.logEnd("session ended", err)
}

func (s *Session) logEnd(msg string, err error) {
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		s.log.Debug(msg)
	default:
		s.log.Info(msg, "err", err)
	}
}

func (s *Session) close() {
	if s.admitted != "" {
		s.srv.releaseUser(s.admitted)
		s.admitted = ""
	}
	s.closeBackends()
	s.client.Close()
}

// handshake greets the client, authenticates it and opens its backend.
func (s *Session) handshake(ctx context.Context) error {
	cfg := s.srv.cfg.Load()
	s.scramble = newScramble()
	version := cfg.ServerVersion
	if version == "" {
		version = s.srv.router.ServerVersion()
	}
	if version == "" {
		version = "5.5.5-10.11.0-MariaDB-sluice"
	}
	caps := uint32(proxyCapabilities)
	if cfg.TLS != nil {
		caps |= mysql.CLIENT_SSL
	}
	if err := s.client.WritePacket(buildHandshake(s.id, s.scramble, version, caps, defaultCollation)); err != nil {
		return err
	}
	if err := s.client.Flush(); err != nil {
		return err
	}
	pkt, err := s.client.ReadPacket()
	if err != nil {
		return fmt.Errorf("read handshake response: %w", err)
	}
	if len(pkt) == sslRequestLen && cfg.TLS != nil && binary.LittleEndian.Uint32(pkt)&mysql.CLIENT_SSL != 0 {
		// An SSL request: TLS first, then the real handshake response.
		if pkt, err = s.startTLS(ctx, cfg.TLS); err != nil {
			return err
		}
	}
	hr, err := parseHandshakeResponse(pkt)
	if err != nil {
		s.writeErr(newSQLError(mysql.ER_HANDSHAKE_ERROR, "Bad handshake"))
		return err
	}
	s.caps = hr.Capabilities & proxyCapabilities
	if cfg.RequireTLS && !s.tls {
		e := newSQLError(errSecureTransportRequired, "Connections using insecure transport are prohibited: this Sluice requires TLS (tls.require)")
		s.writeErr(e)
		return e
	}
	s.collation, s.attrs, s.user, s.db = hr.Collation, hr.Attrs, hr.User, hr.DB
	reply := hr.AuthResponse
	if hr.Plugin != "" && hr.Plugin != mysql.AUTH_NATIVE_PASSWORD && s.caps&mysql.CLIENT_PLUGIN_AUTH != 0 {
		// The client answered for another plugin: ask it to switch.
		if reply, err = s.authSwitch(); err != nil {
			return err
		}
	}
	acct, stage1, err := s.srv.accounts.Authenticate(ctx, hr.User, s.clientIP, s.scramble, reply)
	if err != nil {
		s.srv.metrics.authFailures.Inc()
		var se *SQLError
		if errors.As(err, &se) {
			s.writeErr(se)
		}
		return err
	}
	if e := s.srv.admitUser(hr.User); e != nil {
		s.writeErr(e)
		return e
	}
	s.admitted = hr.User
	s.stage1 = stage1
	s.state.db = hr.DB
	s.log.Debug("authenticated", "user", acct.User, "host", acct.Host)
	if err := s.connectPrimary(ctx); err != nil {
		return err
	}
	if err := s.client.WritePacket(okPacket(0, 0, s.status, 0)); err != nil {
		return err
	}
	return s.client.Flush()
}

// errClientInactive is MySQL's ER_CLIENT_INTERACTION_TIMEOUT.
const errClientInactive = 4031

// sslRequestLen is the size of a client's SSL request: a handshake response
// cut after its fixed part.
const sslRequestLen = 32

// errSecureTransportRequired is MySQL's ER_SECURE_TRANSPORT_REQUIRED.
const errSecureTransportRequired = 3159

// startTLS runs the server side of a TLS handshake on the client
// connection, then reads the handshake response sent over it.
func (s *Session) startTLS(ctx context.Context, cfg *tls.Config) ([]byte, error) {
	hctx, cancel := context.WithTimeout(ctx, s.srv.cfg.Load().ConnectTimeout)
	defer cancel()
	err := s.client.StartTLS(func(c net.Conn) (net.Conn, error) {
		tc := tls.Server(c, cfg)
		if err := tc.HandshakeContext(hctx); err != nil {
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		return tc, nil
	})
	if err != nil {
		return nil, err
	}
	s.tls = true
	pkt, err := s.client.ReadPacket()
	if err != nil {
		return nil, fmt.Errorf("read handshake response: %w", err)
	}
	return pkt, nil
}

// authSwitch asks the client for a mysql_native_password reply to the same
// scramble.
func (s *Session) authSwitch() ([]byte, error) {
	req := make([]byte, 0, 2+len(mysql.AUTH_NATIVE_PASSWORD)+scrambleLen+1)
	req = append(req, mysql.EOF_HEADER)
	req = append(req, mysql.AUTH_NATIVE_PASSWORD...)
	req = append(req, 0)
	req = append(req, s.scramble...)
	req = append(req, 0)
	if err := s.client.WritePacket(req); err != nil {
		return nil, err
	}
	if err := s.client.Flush(); err != nil {
		return nil, err
	}
	reply, err := s.client.ReadPacket()
	if err != nil {
		return nil, fmt.Errorf("read auth switch response: %w", err)
	}
	return bytes.Clone(reply), nil
}

// connectPrimary opens the session's primary connection at login, so a
// bad schema or a refused account fails the login as it would directly.
func (s *Session) connectPrimary(ctx context.Context) error {
	var b *BackendConn
	var err error
	if s.srv.router.Config().Type == "readconnroute" {
		var t router.Target
		if t, err = s.srv.router.ConnTarget(); err == nil {
			b, err = s.dial(ctx, t)
		}
	} else {
		b, err = s.dialPrimary(ctx)
	}
	if err != nil {
		s.writeErr(toSQLError(err))
		return err
	}
	s.primary = b
	s.status = b.Status
	return nil
}

// toSQLError gives the client the server's own error when there is one,
// and otherwise says which server failed and how.
func toSQLError(err error) *SQLError {
	var se *SQLError
	if errors.As(err, &se) {
		return se
	}
	return newSQLError(mysql.ER_UNKNOWN_ERROR, "Sluice: %v", err)
}

func (s *Session) writeErr(e *SQLError) {
	_ = s.client.WritePacket(errPacket(e))
	_ = s.client.Flush()
}

func (s *Session) loop(ctx context.Context) error {
	m := s.srv.metrics
	for {
		s.client.ResetSequence()
		s.idle.Store(s.status&mysql.SERVER_STATUS_IN_TRANS == 0)
		if s.idle.Load() && s.srv.draining.Load() {
			return nil
		}
		idleTimeout := s.srv.cfg.Load().ClientIdleTimeout
		if idleTimeout > 0 {
			_ = s.client.Conn().SetReadDeadline(time.Now().Add(idleTimeout))
		}
		pkt, err := s.client.ReadPacket()
		s.idle.Store(false)
		if idleTimeout > 0 {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// As MySQL 8 does at wait_timeout: say why, then close.
				s.client.ResetSequence()
				s.writeErr(newSQLError(errClientInactive, "The client was disconnected by Sluice because of inactivity (client_idle_timeout %v)", idleTimeout))
				s.log.Info("closing an idle session", "idle", idleTimeout)
				return nil
			}
			_ = s.client.Conn().SetReadDeadline(time.Time{})
		}
		if err != nil {
			if errors.Is(err, ErrPacketTooLarge) {
				s.writeErr(newSQLError(mysql.ER_NET_PACKET_TOO_LARGE, "Got a packet bigger than 'max_allowed_packet' bytes"))
			}
			return err
		}
		if len(pkt) == 0 {
			return fmt.Errorf("%w: empty command packet", errMalformed)
		}
		cmd := pkt[0]
		m.commands[cmd].Inc()
		s.srv.commandsTotal.Add(1)
		start := time.Now()
		s.cur = commandInfo{}
		s.statements++
		s.statementCount.Store(s.statements)
		switch cmd {
		case mysql.COM_QUIT:
			return nil
		case mysql.COM_CHANGE_USER:
			if err := s.changeUser(ctx, pkt); err != nil {
				return err
			}
			continue
		case mysql.COM_BINLOG_DUMP, mysql.COM_BINLOG_DUMP_GTID, mysql.COM_REGISTER_SLAVE,
			mysql.COM_TABLE_DUMP, mysql.COM_CONNECT_OUT, mysql.COM_CLONE, mysql.COM_DAEMON,
			mysql.COM_CONNECT, mysql.COM_TIME, mysql.COM_DELAYED_INSERT, mysql.COM_SLEEP:
			s.writeErr(newSQLError(mysql.ER_UNKNOWN_COM_ERROR, "Unknown command"))
			continue
		}
		// Where a string literal ends depends on the session's sql_mode.
		s.lexer.NoBackslashEscapes = s.status&mysql.SERVER_STATUS_NO_BACKSLASH_ESCAPED != 0
		err = s.dispatch(ctx, pkt)
		if d := s.srv.digests.Load(); d != nil && s.cur.hasStmt {
			d.Record(s.cur.stmt.Digest, s.cur.stmt.Fingerprint, start, time.Since(start), s.cur.res.Rows, s.cur.res.Err != nil)
		}
		if g := s.srv.genlog.Load(); g != nil {
			s.logCommand(g, cmd, pkt, start)
		}
		s.publish()
		if err != nil && !errors.Is(err, errReported) {
			return err
		}
	}
}

// backendFailed ends the session after its backend connection failed. A
// client that has not yet seen part of the response gets an error naming the
// server; one that has cannot be told anything in protocol, so its
// connection is closed. The session's server-side state is gone either way,
// so it must not continue silently.
func (s *Session) backendFailed(b *BackendConn, err error, forwarded int) error {
	if errors.Is(err, errClientGone) {
		return err
	}
	if b != s.primary && b == s.txBackend && forwarded == 0 && !errors.Is(err, errPartialPacket) {
		if s.trx.readOnly && s.trxReplayable() {
			s.log.Warn("replica connection lost in a read-only transaction; replaying it on another server", "server", b.Server, "err", err)
			s.broken[b.Server] = true
			s.dropReplica(b)
			return errTransactionLost
		}
		// The read-only transaction it held is gone with it. Running the
		// rest elsewhere would silently lose the transaction's snapshot, so
		// the session ends, as for a transaction on a lost primary.
		s.writeErr(newSQLError(2013, "Lost connection to backend server '%s' (%s) inside a read-only transaction: %v", b.Server, b.Addr, err))
		s.log.Warn("replica connection failed inside a read-only transaction; closing the session", "server", b.Server, "err", err)
		return fmt.Errorf("backend %s: %w", b.Server, err)
	}
	if b != s.primary && forwarded == 0 && !errors.Is(err, errPartialPacket) {
		// A replica failed before answering: nothing of the session lives
		// only there, so the command can run on the primary instead.
		s.log.Warn("replica connection failed; retrying on the primary", "server", b.Server, "err", err)
		s.broken[b.Server] = true
		s.dropReplica(b)
		return errReplicaLost
	}
	if b == s.primary && forwarded == 0 && !errors.Is(err, errPartialPacket) && !s.trx.readOnly && s.trxReplayable() {
		s.log.Warn("primary connection lost in a transaction; replaying it on the primary", "server", b.Server, "err", err)
		s.dropPrimary()
		return errTransactionLost
	}
	if b == s.primary && forwarded == 0 && !errors.Is(err, errPartialPacket) && s.cur.retryRead &&
		!s.inTransaction() && len(s.temps) == 0 && s.srv.router.Config().Type == "readwritesplit" {
		// A read the primary's connection lost before any answer (the
		// server restarted under it) runs again on a new connection.
		s.log.Warn("primary connection failed before answering a read; retrying on a new connection", "server", b.Server, "err", err)
		s.cur.retryRead = false
		s.dropPrimary()
		return errReplicaLost
	}
	if forwarded == 0 && !errors.Is(err, errPartialPacket) {
		s.writeErr(newSQLError(2013, "Lost connection to backend server '%s' (%s): %v", b.Server, b.Addr, err))
		if !s.inTransaction() && len(s.temps) == 0 && s.srv.router.Config().Type == "readwritesplit" {
			// Nothing of the session lives only on that connection: its
			// state is replayed on the next primary connection.
			s.log.Warn("primary connection failed; the session reconnects at its next command", "server", b.Server, "err", err)
			s.dropPrimary()
			return errReported
		}
	}
	s.log.Warn("backend connection failed; closing the session", "server", b.Server, "err", err)
	return fmt.Errorf("backend %s: %w", b.Server, err)
}

// changeUser handles COM_CHANGE_USER: Sluice checks the new credentials
// itself, then logs in anew, so no state of the previous user survives.
func (s *Session) changeUser(ctx context.Context, pkt []byte) error {
	cu, err := parseChangeUser(pkt, s.caps)
	if err != nil {
		s.writeErr(newSQLError(mysql.ER_HANDSHAKE_ERROR, "Bad handshake"))
		return err
	}
	reply := cu.AuthResponse
	if cu.Plugin != "" && cu.Plugin != mysql.AUTH_NATIVE_PASSWORD {
		if reply, err = s.authSwitch(); err != nil {
			return err
		}
	}
	_, stage1, err := s.srv.accounts.Authenticate(ctx, cu.User, s.clientIP, s.scramble, reply)
	if err != nil {
		s.srv.metrics.authFailures.Inc()
		s.writeErr(toSQLError(err))
		return fmt.Errorf("change user to %q: %w", cu.User, err)
	}
	if cu.User != s.admitted {
		if e := s.srv.admitUser(cu.User); e != nil {
			s.writeErr(e)
			return e
		}
		s.srv.releaseUser(s.admitted)
		s.admitted = cu.User
	}
	s.closeBackends()
	s.resetState(cu.DB)
	s.user, s.db, s.stage1 = cu.User, cu.DB, stage1
	if cu.Collation != 0 {
		s.collation = cu.Collation
	}
	if cu.Attrs != nil {
		s.attrs = cu.Attrs
	}
	s.log = s.log.With("user", s.user)
	if err := s.connectPrimary(ctx); err != nil {
		return err
	}
	if err := s.client.WritePacket(okPacket(0, 0, s.status, 0)); err != nil {
		return err
	}
	return s.client.Flush()
}

func newScramble() []byte {
	b := make([]byte, scrambleLen)
	_, _ = rand.Read(b)
	// The scramble is sent NUL-terminated and must avoid 0 and '$'.
	for i := range b {
		b[i] = b[i]&0x7f | 1
		if b[i] == '$' {
			b[i]++
		}
	}
	return b
}

// routeLabel is the query log's route field.
func (s *Session) routeLabel(c *commandInfo) string {
	if c.route != "" || !c.routed {
		return c.route
	}
	// Most commands of a session go the same way for the same reason:
	// keep the last label rather than build it again per log record.
	l := &s.lastRoute
	if l.label == "" || l.primary != c.routePrimary || l.reason != c.reason {
		*l = routeLabelCache{routeLabel(c.routePrimary, c.reason), c.reason, c.routePrimary}
	}
	return l.label
}

// routeLabelCache is the last route label a session logged.
type routeLabelCache struct {
	label, reason string
	primary       bool
}

// setRoute records where the statement went and why.
func (c *commandInfo) setRoute(primary bool, reason string) {
	c.routed, c.routePrimary, c.reason = true, primary, reason
}

// setStmt records the statement being answered, for the query log.
func (c *commandInfo) setStmt(st *router.Statement, text string) {
	c.stmt, c.hasStmt, c.text = *st, true, text
}

// logSession is the session as the query log names it.
func (s *Session) logSession() *audit.Session {
	if s.logSess.ID == 0 {
		s.logSess = audit.Session{ID: s.id, Client: s.client.Conn().RemoteAddr().String()}
	}
	s.logSess.User, s.logSess.DB = s.user, s.state.db
	return &s.logSess
}

// logCommand writes the query log record of one answered command.
func (s *Session) logCommand(g *audit.Genlog, cmd byte, pkt []byte, start time.Time) {
	c := &s.cur
	q := audit.Query{
		Start: start, Duration: time.Since(start), Command: commandName(cmd),
		Server: c.server, Route: s.routeLabel(c), Rows: c.res.Rows, Affected: c.res.OK.Affected,
		LastInsertID: c.res.OK.LastInsertID, Warnings: c.res.OK.Warnings,
		InTx: s.status&mysql.SERVER_STATUS_IN_TRANS != 0,
	}
	if e := c.res.Err; e != nil {
		q.ErrorCode, q.Error = e.Code, e.Message
	}
	switch {
	case c.hasStmt:
		q.Text, q.Original, q.Fingerprint, q.Digest = c.text, c.original, c.stmt.Fingerprint, c.stmt.Digest
		q.Detected, q.Params, q.GTID = c.detected, c.params, c.gtid
		q.Sensitive = audit.IsSensitive(c.stmt.Keyword, c.stmt.Fingerprint, c.text, c.stmt.Multi)
	case cmd == mysql.COM_INIT_DB || cmd == mysql.COM_FIELD_LIST:
		q.Text = string(pkt[1:])
	}
	g.LogQuery(s.logSession(), &q)
}
