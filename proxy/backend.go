package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
)

// Login is what a backend connection logs in with: the client's own user
// and SHA1(password), never the password itself.
type Login struct {
	User   string
	Stage1 []byte
	DB     string
	// Capabilities are the client's; the backend speaks the same dialect so
	// that results pass through unchanged.
	Capabilities uint32
	Collation    byte
	Attrs        []byte
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
}

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
	auth := scrambleReply(hs.Scramble, login.Stage1)
	if err := b.pio.WritePacket(buildHandshakeResponse(caps, login.Collation, login.User, auth, login.DB, login.Attrs)); err != nil {
		return err
	}
	if err := b.pio.Flush(); err != nil {
		return err
	}
	for range 3 {
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
			// Auth switch request: plugin name, then a fresh scramble.
			plugin, data, _ := cutNul(pkt[1:])
			if string(plugin) != mysql.AUTH_NATIVE_PASSWORD {
				return fmt.Errorf("server asks for auth plugin %q; Sluice relays only mysql_native_password", plugin)
			}
			data = trimNul(data)
			if err := b.pio.WritePacket(scrambleReply(data, login.Stage1)); err != nil {
				return err
			}
			if err := b.pio.Flush(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected auth packet 0x%02x", pkt[0])
		}
	}
	return errors.New("too many auth round trips")
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
	b.pio.ResetSequence()
	_ = b.pio.WritePacket([]byte{mysql.COM_QUIT})
	_ = b.pio.Flush()
	return b.pio.Close()
}

// ServiceConnect opens a connection with the service account, for the
// monitor and for loading accounts.
func ServiceConnect(ctx context.Context, addr, user, password string, timeout time.Duration) (*client.Conn, error) {
	return client.ConnectWithContext(ctx, addr, user, password, "", timeout)
}

// ServerAccountSource loads accounts from the first of servers() that
// answers, with the service user.
func ServerAccountSource(servers func() []string, user, password string, timeout time.Duration) AccountSource {
	return func(ctx context.Context) ([]Account, error) {
		var errs []error
		for _, addr := range servers() {
			accts, err := loadAccounts(ctx, addr, user, password, timeout)
			if err == nil {
				return accts, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(append([]error{errNoAccounts}, errs...)...)
	}
}

func loadAccounts(ctx context.Context, addr, user, password string, timeout time.Duration) ([]Account, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := ServiceConnect(ctx, addr, user, password, timeout)
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
		a := Account{User: u, Host: h, Plugin: plugin}
		if plugin == "" || plugin == mysql.AUTH_NATIVE_PASSWORD {
			a.Plugin = mysql.AUTH_NATIVE_PASSWORD
			stage2, err := ParseNativeHash(strings.TrimSpace(hash))
			if err != nil {
				continue
			}
			a.Stage2 = stage2
		}
		accts = append(accts, a)
	}
	return accts, nil
}
