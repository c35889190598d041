package logbroker

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Connections that do not identify themselves are closed within these
// (variables only so that tests can shorten them before a broker starts).
var (
	// tlsHandshakeTimeout bounds a TLS handshake: a client that opens
	// the port and sends nothing is closed within it.
	tlsHandshakeTimeout = 10 * time.Second
	// authTimeout is how long a connection may stay unauthenticated when
	// SASL is on.
	authTimeout = 30 * time.Second
)

// preAuthMaxRequest bounds a request frame before SASL authentication.
const preAuthMaxRequest = 512 << 10

// anonymousPrincipal is the principal of clients that are not identified
// (no SASL, no client certificate), as Kafka names it.
const anonymousPrincipal = "ANONYMOUS"

// connState is what the broker knows about one client connection.
type connState struct {
	conn      net.Conn
	principal string // "" until SASL authentication completes
	needSASL  bool
	sasl      saslSession
	batch     *coalescingConn // under TLS: gathers a response's records
}

// coalescedBytes is how much TLS output a response gathers before one
// write to the socket.
const coalescedBytes = 256 << 10

var coalesceBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, coalescedBytes+20<<10) // and one more record
	return &b
}}

// coalescingConn sits under crypto/tls. While a response is written
// (begin to end) it gathers TLS records, 16 KiB each, and sends them in
// writes of about coalescedBytes rather than one system call per record;
// otherwise (the handshake, alerts) it writes through. Its buffer is
// pooled and held only while a response is written.
type coalescingConn struct {
	net.Conn
	mu       sync.Mutex
	batching bool
	buf      *[]byte
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching {
		return c.Conn.Write(p)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= coalescedBytes {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *coalescingConn) flushLocked() error {
	_, err := c.Conn.Write(*c.buf)
	*c.buf = (*c.buf)[:0]
	return err
}

// begin starts gathering a response's records.
func (c *coalescingConn) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching, c.buf = true, coalesceBufs.Get().(*[]byte)
}

// end sends what was gathered and writes through again.
func (c *coalescingConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.flushLocked()
	coalesceBufs.Put(c.buf)
	c.batching, c.buf = false, nil
	return err
}

// openConn does the TLS handshake when broker.tls is set and works out
// who the client is. A failed handshake (a plaintext client, an unknown
// client certificate, silence) refuses the connection.
func (b *Broker) openConn(ctx context.Context, c net.Conn) (*connState, net.Conn, error) {
	cs := &connState{conn: c, principal: anonymousPrincipal}
	if b.tlsConfig != nil {
		cs.batch = &coalescingConn{Conn: c}
		tc := tls.Server(cs.batch, b.tlsConfig)
		tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return nil, c, fmt.Errorf("TLS handshake failed (a plaintext client on the TLS listener, or a certificate the broker does not accept): %w", err)
		}
		tc.SetDeadline(time.Time{})
		c = tc
		cs.conn = c
		if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
			cs.principal = peers[0].Subject.CommonName
		}
	}
	if b.sasl != nil {
		cs.principal, cs.needSASL = "", true
		c.SetReadDeadline(time.Now().Add(authTimeout))
	}
	return cs, c, nil
}

// authenticated is called when SASL authentication completes.
func (cs *connState) authenticated() {
	cs.needSASL = false
	cs.conn.SetReadDeadline(time.Time{})
}

// admit decides whether a request with api key may be served now: before
// SASL authentication only ApiVersions and the SASL exchange are, and a
// session past its lifetime must re-authenticate first. A refusal closes
// the connection, as Kafka does.
func (cs *connState) admit(key int16, now time.Time) error {
	switch key {
	case kmsg.ApiVersions.Int16(), kmsg.SASLHandshake.Int16(), kmsg.SASLAuthenticate.Int16():
		return nil
	}
	if cs.needSASL {
		return errCloseConn{fmt.Sprintf("%s request before SASL authentication", kmsg.NameForKey(key))}
	}
	if !cs.sasl.expiry.IsZero() && now.After(cs.sasl.expiry) {
		return errCloseConn{fmt.Sprintf("SASL session of %q expired (broker.sasl.session_lifetime) without re-authentication", cs.principal)}
	}
	return nil
}

// handleRawSASL carries one raw token after SaslHandshake v0. Raw frames
// have no way to carry an error, so a failure closes the connection.
func (b *Broker) handleRawSASL(cs *connState, token []byte) (*pendingResponse, error) {
	b.counters.countRequest(kmsg.SASLAuthenticate.Int16())
	reply, _, err := b.saslStep(cs, token)
	if err != nil {
		b.counters.authFailures.Add(1)
		return nil, errCloseConn{fmt.Sprintf("SASL authentication failed (SaslHandshake v0): %v", err)}
	}
	if reply == nil {
		reply = []byte{}
	}
	return &pendingResponse{raw: reply, noHeader: true}, nil
}
