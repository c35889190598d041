package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/router"
)

// Session is one client connection: the login and the command loop. The
// commands themselves run in its processor (command.go), over the
// session's connections to the servers (backends.go).
type Session struct {
	srv    *Server
	id     uint32
	client *PacketIO
	// clientAddr is the client's address: the connection's peer, or the
	// one a trusted balancer's PROXY header names; clientIP its host.
	clientAddr net.Addr
	clientIP   string
	log        *slog.Logger

	caps      uint32
	collation byte
	attrs     []byte
	scramble  []byte
	user      string
	// admitted is the user counted against max_user_connections.
	admitted string
	// tls is true once the client connection is TLS.
	tls bool
	// authPlugin is the plugin the last authentication ran with.
	authPlugin string
	// password is the account's password when Sluice holds it, for
	// backend logins; wiped when the session ends or changes user.
	password []byte

	proc processor

	// idle is true while the session waits for a command outside a
	// transaction: a draining server may close it then.
	idle atomic.Bool

	// lastRoute caches the route label of the last query log record.
	lastRoute  routeLabelCache
	started    time.Time
	statements int64
	logSess    audit.Session
	// spans is the buffer of the query log's redaction (Lexer.Literals).
	spans []router.Span
	// view and statementCount are what the admin API reads.
	view           atomic.Pointer[SessionInfo]
	statementCount atomic.Int64
}

func newSession(srv *Server, conn net.Conn) *Session {
	id := srv.nextID.Add(1)
	s := &Session{srv: srv, id: id, client: NewPacketIO(conn), log: srv.log.With("session", id, "client", conn.RemoteAddr().String())}
	s.setClientAddr(conn.RemoteAddr())
	s.proc.init(srv, s.client, s.log)
	s.proc.sessionID = id
	s.client.SetMaxPayload(srv.cfg.Load().MaxAllowedPacket)
	return s
}

// refuse answers a connection that will not get a session, in place of the
// handshake, as MySQL does for "Too many connections".
func (s *Session) refuse(e *SQLError) {
	defer s.client.Close()
	_ = s.client.Send(errPacket(e))
	s.log.Warn("connection refused", "code", e.Code, "reason", e.Message)
}

func (s *Session) run(ctx context.Context) {
	m := s.srv.metrics
	m.sessions.Inc()
	defer m.sessions.Dec()
	defer s.close()
	s.started = time.Now()
	if err := s.acceptProxyHeader(); err != nil {
		s.log.Warn("connection refused", "err", err)
		return
	}
	if g := s.srv.genlog.Load(); g != nil {
		g.LogConnect(s.logSession(), s.started)
	}
	err := s.handshake(ctx)
	if g := s.srv.genlog.Load(); g != nil && s.user != "" {
		a := audit.Auth{Time: time.Now(), OK: err == nil, Plugin: s.authPlugin, TLS: s.tls}
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
	s.setLog(s.log.With("user", s.user))
	s.log.Debug("session started", "db", s.proc.state.db)
	s.publish()
	err = s.loop(ctx)
	s.logEnd("session ended", err)
}

// setClientAddr makes addr the client's address.
func (s *Session) setClientAddr(addr net.Addr) {
	s.clientAddr = addr
	s.clientIP, _, _ = net.SplitHostPort(addr.String())
}

// acceptProxyHeader reads the PROXY header a trusted balancer puts first
// (proxy_protocol_networks), and takes the client's address from it.
func (s *Session) acceptProxyHeader() error {
	cfg := s.srv.cfg.Load()
	if len(cfg.ProxyProtocolNetworks) == 0 {
		return nil
	}
	peer := s.client.Conn().RemoteAddr()
	ap, err := netip.ParseAddrPort(peer.String())
	if err != nil {
		return nil // not an IP connection: nothing to trust
	}
	trusted, _ := parseNetworks(cfg.ProxyProtocolNetworks) // validated with the config
	if !proxyHeaderFrom(ap.Addr(), trusted) {
		return nil
	}
	addr, err := acceptProxyHeader(s.client, peer, cfg.ConnectTimeout)
	if err != nil {
		return err
	}
	s.setClientAddr(addr)
	s.setLog(s.srv.log.With("session", s.id, "client", addr.String(), "via", peer.String()))
	return nil
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
	s.proc.end()
	s.client.Close()
	s.wipePassword()
}

// wipePassword overwrites the password the session held.
func (s *Session) wipePassword() {
	clear(s.password)
	s.password = nil
	s.proc.backends.login.Password = nil
}

// setLog replaces the session's logger (a new user).
func (s *Session) setLog(l *slog.Logger) {
	s.log = l
	s.proc.setLog(l)
}

// setLogin records who the session is logged in as; the processor logs in
// to the servers as the client's own user with SHA1(password), or with the
// password where the servers' plugin needs it and Sluice holds it.
func (s *Session) setLogin(user string, l *clientLogin) {
	s.user = user
	s.wipePassword()
	s.password = l.password
	s.proc.setLogin(Login{User: user, Stage1: l.stage1, Password: l.password, Capabilities: s.caps, Collation: s.collation, Attrs: s.attrs, Client: s.clientAddr})
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
	offered := handshakePlugin(cfg.Auth.Plugins)
	s.authPlugin = offered
	if err := s.client.Send(buildHandshake(s.id, s.scramble, version, caps, defaultCollation, offered)); err != nil {
		return err
	}
	if err := refuseProxyHeader(s.client, s.client.Conn().RemoteAddr()); err != nil {
		s.client.SendError(newSQLError(mysql.ER_HANDSHAKE_ERROR, "PROXY protocol header refused: this address is not in Sluice's proxy_protocol_networks"))
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
		s.client.SendError(newSQLError(mysql.ER_HANDSHAKE_ERROR, "Bad handshake"))
		return err
	}
	s.caps = hr.Capabilities & proxyCapabilities
	if cfg.RequireTLS && !s.tls {
		e := newSQLError(errSecureTransportRequired, "Connections using insecure transport are prohibited: this Sluice requires TLS (tls.require)")
		s.client.SendError(e)
		return e
	}
	s.collation, s.attrs, s.user = hr.Collation, hr.Attrs, hr.User
	login, err := s.authenticate(ctx, hr.User, hr.Plugin, hr.AuthResponse)
	if err != nil {
		s.srv.metrics.authFailures.Inc()
		var se *SQLError
		if errors.As(err, &se) {
			s.client.SendError(se)
		}
		return err
	}
	if e := s.srv.admitUser(hr.User); e != nil {
		s.client.SendError(e)
		return e
	}
	s.admitted = hr.User
	s.setLogin(hr.User, login)
	s.proc.state.db = hr.DB
	s.log.Debug("authenticated", "user", login.acct.User, "host", login.acct.Host, "plugin", s.authPlugin)
	if err := s.proc.connect(ctx); err != nil {
		s.serverRefused(ctx, login, err)
		return err
	}
	return s.client.Send(okPacket(0, 0, s.proc.status, 0))
}

// serverRefused handles a login the client passed and the server refused:
// what Sluice knew of the account is stale (changed on the servers), so a
// learned password is forgotten and the accounts reload (throttled).
func (s *Session) serverRefused(ctx context.Context, login *clientLogin, err error) {
	var se *SQLError
	if !errors.As(err, &se) || se.Code != mysql.ER_ACCESS_DENIED_ERROR {
		return
	}
	s.srv.accounts.forget(login.acct)
	s.srv.accounts.refresh(ctx)
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

// toSQLError gives the client the server's own error when there is one,
// and otherwise says which server failed and how.
func toSQLError(err error) *SQLError {
	var se *SQLError
	if errors.As(err, &se) {
		return se
	}
	return newSQLError(mysql.ER_UNKNOWN_ERROR, "Sluice: %v", err)
}

func (s *Session) loop(ctx context.Context) error {
	m := s.srv.metrics
	for {
		s.client.ResetSequence()
		s.idle.Store(s.proc.status&mysql.SERVER_STATUS_IN_TRANS == 0)
		if s.idle.Load() && s.srv.draining.Load() {
			return nil
		}
		cfg := s.srv.cfg.Load()
		if s.proc.releasesWhenIdle() {
			// Give the connections back once the client has been quiet
			// for pool.idle_time.
			if ready, err := s.client.WaitReadable(cfg.Pool.IdleTime); err == nil && !ready {
				s.proc.settle(true)
			}
		}
		idleTimeout := cfg.ClientIdleTimeout
		if idleTimeout > 0 {
			_ = s.client.Conn().SetReadDeadline(time.Now().Add(idleTimeout))
		}
		pkt, err := s.client.ReadPacket()
		s.idle.Store(false)
		if idleTimeout > 0 {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// As MySQL 8 does at wait_timeout: say why, then close.
				s.client.ResetSequence()
				s.client.SendError(newSQLError(errClientInactive, "The client was disconnected by Sluice because of inactivity (client_idle_timeout %v)", idleTimeout))
				s.log.Info("closing an idle session", "idle", idleTimeout)
				return nil
			}
			_ = s.client.Conn().SetReadDeadline(time.Time{})
		}
		if err != nil {
			if errors.Is(err, ErrPacketTooLarge) {
				s.client.SendError(newSQLError(mysql.ER_NET_PACKET_TOO_LARGE, "Got a packet bigger than 'max_allowed_packet' bytes"))
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
		s.proc.rec = queryRecord{}
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
			s.client.SendError(newSQLError(mysql.ER_UNKNOWN_COM_ERROR, "Unknown command"))
			continue
		}
		// Where a string literal ends depends on the session's sql_mode.
		err = s.proc.dispatch(ctx, pkt)
		took := time.Since(start)
		r := &s.proc.rec
		m.observe(cmd, r.routed, r.toPrimary, took)
		// A close names its statement for the audit trail; it is no
		// execution of it.
		if d := s.srv.digests.Load(); d != nil && r.hasStmt && cmd != mysql.COM_STMT_CLOSE {
			d.Record(r.stmt.Digest, r.stmt.Fingerprint, start, took, r.res.Rows, r.res.Err != nil)
		}
		if g := s.srv.genlog.Load(); g != nil {
			s.logCommand(g, cmd, pkt, start, took)
		}
		if err != nil && !errors.Is(err, errReported) {
			s.proc.dirty = true // an answer may be left half read
			s.publish()
			return err
		}
		s.proc.settle(false)
		s.publish()
	}
}

// changeUser handles COM_CHANGE_USER: Sluice checks the new credentials
// itself, then logs in anew, so no state of the previous user survives.
func (s *Session) changeUser(ctx context.Context, pkt []byte) error {
	cu, err := parseChangeUser(pkt, s.caps)
	if err != nil {
		s.client.SendError(newSQLError(mysql.ER_HANDSHAKE_ERROR, "Bad handshake"))
		return err
	}
	login, err := s.authenticate(ctx, cu.User, cu.Plugin, cu.AuthResponse)
	if err != nil {
		s.srv.metrics.authFailures.Inc()
		s.client.SendError(toSQLError(err))
		return fmt.Errorf("change user to %q: %w", cu.User, err)
	}
	if cu.User != s.admitted {
		if e := s.srv.admitUser(cu.User); e != nil {
			s.client.SendError(e)
			return e
		}
		s.srv.releaseUser(s.admitted)
		s.admitted = cu.User
	}
	s.proc.end()
	s.proc.resetState(cu.DB)
	if cu.Collation != 0 {
		s.collation = cu.Collation
	}
	if cu.Attrs != nil {
		s.attrs = cu.Attrs
	}
	s.setLogin(cu.User, login)
	s.setLog(s.log.With("user", s.user))
	if err := s.proc.connect(ctx); err != nil {
		s.serverRefused(ctx, login, err)
		return err
	}
	return s.client.Send(okPacket(0, 0, s.proc.status, 0))
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
