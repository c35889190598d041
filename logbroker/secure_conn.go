package logbroker

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
}

// openConn does the TLS handshake when broker.tls is set and works out
// who the client is. A failed handshake (a plaintext client, an unknown
// client certificate, silence) refuses the connection.
func (b *Broker) openConn(ctx context.Context, c net.Conn) (*connState, net.Conn, error) {
	cs := &connState{conn: c, principal: anonymousPrincipal}
	if b.tlsConfig != nil {
		tc := tls.Server(c, b.tlsConfig)
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
