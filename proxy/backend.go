package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/monitor"
)

// Login is what a backend connection logs in with: the client's own user
// and SHA1(password), and the password itself only where the server's
// plugin needs it (caching_sha2_password, client_ed25519) and Sluice holds
// it (authplugin.go). It lives in memory only and is never logged.
type Login struct {
	User   string
	Stage1 []byte
	// Password is nil when Sluice does not hold it.
	Password []byte
	DB       string
	// Capabilities are the client's; the backend speaks the same dialect so
	// that results pass through unchanged.
	Capabilities uint32
	Collation    byte
	Attrs        []byte
	// TLS, when set, secures the connection; the server must offer it.
	TLS *tls.Config
	// Client is the address of the client the connection serves; with
	// ProxyHeader a PROXY v2 header naming it starts the connection.
	Client      net.Addr
	ProxyHeader bool
}

// BackendConn is one connection from Sluice to a server, logged in as a
// client's user.
type BackendConn struct {
	Server string
	Addr   string
	pio    *PacketIO
	hs     ServerHandshake
	// Status holds the server status flags of the last OK or EOF received.
	Status uint16

	// What session state this connection holds: owner's at version synced
	// (with pooling, owner may be another session). vars are the variables
	// sessions set on it (a variable absent is at its default), baseline
	// the character set variables it logged in with (pooled connections
	// only: what a session's SET NAMES is undone to).
	owner           *SessionState
	synced          uint64
	vars            map[string]string
	baseline        map[string]string
	db              string
	multiStatements *bool
	// lastInsertID is what LAST_INSERT_ID() answers on this connection, as
	// its answers told.
	lastInsertID uint64
	// stmts are the statements prepared on this connection, shared by the
	// sessions that use it (stmt.go).
	stmts serverStmts
	// gtidSeen is the last GTID this replica connection waited for.
	gtidSeen string
	// pool is set on a connection of the pool.
	pool *pooled
}

// isMariaDB tells the server flavour from its handshake version.
func (b *BackendConn) isMariaDB() bool { return strings.Contains(b.hs.Version, "MariaDB") }

// DialBackend connects to addr and logs in; ctx bounds the whole exchange.
func DialBackend(ctx context.Context, server, addr string, login Login) (*BackendConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s (%s): %w", server, addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if login.ProxyHeader && login.Client != nil {
		if err := sendProxyHeader(conn, login.Client); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%s (%s): %w", server, addr, err)
		}
	}
	b := &BackendConn{Server: server, Addr: addr, pio: NewPacketIO(conn)}
	if err := b.login(login); err != nil {
		b.pio.Close()
		return nil, fmt.Errorf("log in to %s (%s) as %q: %w", server, addr, login.User, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return b, nil
}

func (b *BackendConn) login(login Login) error {
	pkt, err := b.pio.ReadPacket()
	if err != nil {
		return fmt.Errorf("read handshake: %w", err)
	}
	hs, err := parseServerHandshake(pkt)
	if err != nil {
		return err
	}
	b.hs = hs
	caps := login.Capabilities&^backendOnlyCapabilities | mysql.CLIENT_PROTOCOL_41 |
		mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_PLUGIN_AUTH
	caps &= hs.Capabilities
	if login.DB != "" {
		caps |= mysql.CLIENT_CONNECT_WITH_DB & hs.Capabilities
	} else {
		caps &^= mysql.CLIENT_CONNECT_WITH_DB
	}
	if login.TLS != nil {
		if hs.Capabilities&mysql.CLIENT_SSL == 0 {
			return errors.New("the server does not offer TLS, which tls.backend requires; enable TLS on the server (ssl_cert, ssl_key)")
		}
		caps |= mysql.CLIENT_SSL
		if err := b.pio.Send(buildSSLRequest(caps, login.Collation)); err != nil {
			return err
		}
		err := b.pio.StartTLS(func(c net.Conn) (net.Conn, error) {
			tc := tls.Client(c, login.TLS)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			return tc, nil
		})
		if err != nil {
			return err
		}
	}
	return b.authenticate(&login, caps)
}

// authenticate answers the server's handshake and whatever plugin it then
// asks for, up to its OK.
func (b *BackendConn) authenticate(login *Login, caps uint32) error {
	tlsOn := login.TLS != nil
	plugin := backendPlugin(b.hs.Plugin, login.Password != nil)
	scramble := b.hs.Scramble
	auth, err := backendAuthData(plugin, scramble, login, tlsOn)
	if err != nil {
		return err
	}
	if err := b.pio.Send(buildHandshakeResponse(caps, login.Collation, login.User, auth, login.DB, login.Attrs, plugin)); err != nil {
		return err
	}
	for range 6 {
		pkt, err := b.pio.ReadPacket()
		if err != nil {
			return fmt.Errorf("read auth result: %w", err)
		}
		switch {
		case len(pkt) == 0:
			return errMalformed
		case pkt[0] == mysql.OK_HEADER:
			if ok, valid := parseOK(pkt); valid {
				b.Status = ok.Status
			}
			b.hs.Capabilities = caps
			return nil
		case pkt[0] == mysql.ERR_HEADER:
			return parseErr(pkt)
		case pkt[0] == mysql.EOF_HEADER:
			// Auth switch request: plugin name, then its data (a
			// NUL-terminated scramble, or client_ed25519's bare nonce).
			name, data, _ := cutNul(pkt[1:])
			plugin = string(name)
			scramble = bytes.Clone(data)
			if plugin != pluginEd25519 {
				scramble = trimNul(scramble)
			}
			auth, err := backendAuthData(plugin, scramble, login, tlsOn)
			if err != nil {
				return err
			}
			if err := b.pio.Send(auth); err != nil {
				return err
			}
		case pkt[0] == mysql.MORE_DATE_HEADER && plugin == pluginSHA2 && len(pkt) == 2 && pkt[1] == 3:
			// Fast authentication succeeded: the OK follows.
		case pkt[0] == mysql.MORE_DATE_HEADER && plugin == pluginSHA2 && len(pkt) == 2 && pkt[1] == 4:
			if err := b.sha2FullAuth(login, scramble, tlsOn); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected auth packet 0x%02x during %s", pkt[0], plugin)
		}
	}
	return errors.New("too many auth round trips")
}

// sha2FullAuth is caching_sha2_password's full authentication towards a
// server: the password in clear over TLS, else RSA-encrypted with the
// server's public key, which Sluice asks for.
func (b *BackendConn) sha2FullAuth(login *Login, scramble []byte, tlsOn bool) error {
	if tlsOn {
		return b.pio.Send(append(bytes.Clone(login.Password), 0))
	}
	if err := b.pio.Send([]byte{2}); err != nil { // request the public key
		return err
	}
	pkt, err := b.pio.ReadPacket()
	if err != nil {
		return fmt.Errorf("read the server's RSA public key: %w", err)
	}
	if len(pkt) > 0 && pkt[0] == mysql.ERR_HEADER {
		return parseErr(pkt)
	}
	if len(pkt) < 2 || pkt[0] != mysql.MORE_DATE_HEADER {
		return fmt.Errorf("%w: no RSA public key from the server", errMalformed)
	}
	pub, err := parseRSAPublicKey(pkt[1:])
	if err != nil {
		return fmt.Errorf("the server's RSA public key: %w", err)
	}
	enc, err := mysql.EncryptPassword(string(login.Password), scramble, pub)
	if err != nil {
		return err
	}
	return b.pio.Send(enc)
}

func trimNul(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == 0 {
		return b[:len(b)-1]
	}
	return b
}

// Handshake is the server's initial handshake as received.
func (b *BackendConn) Handshake() ServerHandshake { return b.hs }

// Capabilities are the ones negotiated with the server.
func (b *BackendConn) Capabilities() uint32 { return b.hs.Capabilities }

// ConnID is the server's thread id for this connection.
func (b *BackendConn) ConnID() uint32 { return b.hs.ConnID }

// PacketIO is the connection's packet layer.
func (b *BackendConn) PacketIO() *PacketIO { return b.pio }

// Close closes the connection; only the owning session may call it.
func (b *BackendConn) Close() error { return b.pio.Close() }

// QuitAndClose sends COM_QUIT, so the server logs a clean disconnect, and closes.
func (b *BackendConn) QuitAndClose() error {
	_ = b.pio.SendCommand([]byte{mysql.COM_QUIT})
	return b.pio.Close()
}

// ServerAccountSource loads accounts from the first of servers() that
// answers, with the service user, over TLS when tlsCfg is set
// (tls.backend: the password hashes it reads never cross in the clear).
func ServerAccountSource(servers func() []string, user, password string, timeout time.Duration, tlsCfg *tls.Config) AccountSource {
	return func(ctx context.Context) ([]Account, error) {
		var errs []error
		for _, addr := range servers() {
			accts, err := loadAccounts(ctx, addr, user, password, timeout, tlsCfg)
			if err == nil {
				return accts, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(append([]error{errNoAccounts}, errs...)...)
	}
}

func loadAccounts(ctx context.Context, addr, user, password string, timeout time.Duration, tlsCfg *tls.Config) ([]Account, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := monitor.ServiceConnect(ctx, addr, user, password, timeout, tlsCfg)
	if err != nil {
		return nil, fmt.Errorf("load accounts from %s: %w", addr, err)
	}
	defer conn.Close()
	// MariaDB 10.4+ and MySQL 5.7+ both expose these columns of mysql.user.
	res, err := conn.Execute("SELECT User, Host, plugin, authentication_string FROM mysql.user")
	if err != nil {
		return nil, fmt.Errorf("load accounts from %s: %w (grant the service user SELECT on mysql.*)", addr, err)
	}
	defer res.Close()
	accts := make([]Account, 0, res.RowNumber())
	for i := range res.RowNumber() {
		u, _ := res.GetString(i, 0)
		h, _ := res.GetString(i, 1)
		plugin, _ := res.GetString(i, 2)
		hash, _ := res.GetString(i, 3)
		if u == "" {
			continue // anonymous accounts are not proxied
		}
		// go-mysql's strings point into a buffer Close recycles: copy them.
		a := Account{User: strings.Clone(u), Host: strings.Clone(h), Plugin: strings.Clone(plugin)}
		if !parseCredential(&a, hash) {
			continue
		}
		accts = append(accts, a)
	}
	return accts, nil
}

// Value is one column of a row read by Sluice itself.
type Value struct {
	Null bool
	Text string
	// Type is the column's MySQL type; Binary is set for the binary charset.
	Type   byte
	Binary bool
}

// command sends a command Sluice issues for itself (replaying state) and
// reads its single OK or ERR answer.
func (b *BackendConn) command(payload []byte) error {
	if err := b.pio.SendCommand(payload); err != nil {
		return err
	}
	pkt, err := b.pio.ReadPacket()
	if err != nil {
		return err
	}
	switch {
	case len(pkt) > 0 && pkt[0] == mysql.ERR_HEADER:
		return parseErr(pkt)
	case len(pkt) > 0 && (pkt[0] == mysql.OK_HEADER || pkt[0] == mysql.EOF_HEADER):
		if ok, valid := parseOK(pkt); valid && pkt[0] == mysql.OK_HEADER {
			b.Status = ok.Status
		}
		return nil
	}
	return fmt.Errorf("%w: unexpected answer 0x%02x", errMalformed, pkt[0])
}

// queryRow runs a text query Sluice issues for itself and returns its first
// row; the rest of the result is read and dropped.
func (b *BackendConn) queryRow(query string) ([]Value, error) {
	if err := b.pio.SendCommand(commandPacket(mysql.COM_QUERY, query)); err != nil {
		return nil, err
	}
	pkt, err := b.pio.ReadPacket()
	if err != nil {
		return nil, err
	}
	if len(pkt) > 0 && pkt[0] == mysql.ERR_HEADER {
		return nil, parseErr(pkt)
	}
	n, _, ok := lengthEncodedInt(pkt)
	if !ok || n == 0 || n > 4096 {
		return nil, fmt.Errorf("%w: column count", errMalformed)
	}
	deprecateEOF := b.hs.Capabilities&mysql.CLIENT_DEPRECATE_EOF != 0
	row := make([]Value, n)
	for i := range row {
		if pkt, err = b.pio.ReadPacket(); err != nil {
			return nil, err
		}
		row[i].Type, row[i].Binary = columnType(pkt)
	}
	if !deprecateEOF {
		if _, err = b.pio.ReadPacket(); err != nil {
			return nil, err
		}
	}
	gotRow := false
	for {
		if pkt, err = b.pio.ReadPacket(); err != nil {
			return nil, err
		}
		if len(pkt) > 0 && pkt[0] == mysql.ERR_HEADER {
			return nil, parseErr(pkt)
		}
		if len(pkt) > 0 && pkt[0] == mysql.EOF_HEADER && len(pkt) < maxPacketPayload {
			if ok, valid := parseOK(pkt); valid && deprecateEOF {
				b.Status = ok.Status
			} else if eof, valid := parseEOF(pkt); valid {
				b.Status = eof.Status
			}
			break
		}
		if gotRow {
			continue
		}
		gotRow = true
		rest := pkt
		for i := range row {
			if len(rest) > 0 && rest[0] == 0xfb {
				row[i].Null = true
				rest = rest[1:]
				continue
			}
			l, size, ok := lengthEncodedInt(rest)
			if !ok || uint64(len(rest)-size) < l {
				return nil, fmt.Errorf("%w: row", errMalformed)
			}
			row[i].Text = string(rest[size : size+int(l)])
			rest = rest[size+int(l):]
		}
	}
	if !gotRow {
		return nil, errors.New("query returned no row")
	}
	return row, nil
}

// columnType reads the type and binary charset from a column definition.
func columnType(def []byte) (typ byte, binary bool) {
	rest := def
	for range 6 { // catalog, schema, table, org_table, name, org_name
		l, size, ok := lengthEncodedInt(rest)
		if !ok || uint64(len(rest)-size) < l {
			return 0, false
		}
		rest = rest[size+int(l):]
	}
	if len(rest) < 8 {
		return 0, false
	}
	charset := uint16(rest[1]) | uint16(rest[2])<<8
	return rest[7], charset == 63
}

// prepareIn prepares query in schema db: what a statement's names mean is
// fixed where it was prepared, and this connection may have moved since.
func (b *BackendConn) prepareIn(db, query string) (uint32, error) {
	if db == "" || db == b.db {
		return b.prepare(query)
	}
	if err := b.command(commandPacket(mysql.COM_INIT_DB, db)); err != nil {
		return 0, fmt.Errorf("prepare in schema %s: %w", db, err)
	}
	id, err := b.prepare(query)
	if err2 := b.command(commandPacket(mysql.COM_INIT_DB, b.db)); err2 != nil && err == nil {
		return 0, fmt.Errorf("back to schema %s: %w", b.db, err2)
	}
	return id, err
}

// prepare prepares query on this connection for Sluice's own bookkeeping
// and returns the server's statement id; the definitions are dropped.
func (b *BackendConn) prepare(query string) (uint32, error) {
	discard := NewPacketIO(discardConn{})
	defer discard.Close()
	r := relay{client: discard, deprecateEOF: b.hs.Capabilities&mysql.CLIENT_DEPRECATE_EOF != 0}
	res, _, err := b.exchange(commandPacket(mysql.COM_STMT_PREPARE, query), r, 0)
	switch {
	case err != nil:
		return 0, err
	case res.Err != nil:
		return 0, res.Err
	}
	return res.Prepare.StatementID, nil
}

// exchange sends one command and relays its answer through r (whose
// backend it sets), waiting at most timeout (0: as long as the server
// takes) for it. forwarded counts the packets relayed before an error.
func (b *BackendConn) exchange(pkt []byte, r relay, timeout time.Duration) (res Result, forwarded int, err error) {
	bio := b.pio
	if timeout > 0 {
		// The connection is closed if this fires: its stream is lost.
		_ = bio.Conn().SetReadDeadline(time.Now().Add(timeout))
		defer bio.Conn().SetReadDeadline(time.Time{})
	}
	bio.ResetSequence()
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
	r.backend = bio
	res, err = r.run(kind)
	if r.sum != nil && res.ResultSet {
		res.RowsSum = r.sum.Sum64()
	}
	if r.rows != nil && res.ResultSet {
		res.RowsChecksum, res.RowsChecked = r.rows.Sum64(), true
	}
	if err != nil {
		return res, r.forwarded, err
	}
	if res.StatusKnown {
		b.Status = res.OK.Status
	}
	return res, r.forwarded, nil
}
