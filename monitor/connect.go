package monitor

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
)

// ServiceConnect opens a connection to the server at addr with a service
// account (the monitor's, the account loader's). With tlsCfg (tls.backend)
// it is TLS, verified as session connections are: see TLSFor.
func ServiceConnect(ctx context.Context, addr, user, password string, timeout time.Duration, tlsCfg *tls.Config) (*client.Conn, error) {
	if tlsCfg == nil {
		return client.ConnectWithContext(ctx, addr, user, password, "", timeout)
	}
	return client.ConnectWithContext(ctx, addr, user, password, "", timeout, func(c *client.Conn) error {
		c.SetTLSConfig(TLSFor(tlsCfg, addr))
		return nil
	})
}

// TLSFor is the TLS config for a connection to the server at addr: c,
// whose ServerName, when empty, becomes the host Sluice dials, so the
// server's certificate is checked against it. nil when c is nil.
func TLSFor(c *tls.Config, addr string) *tls.Config {
	if c == nil || c.ServerName != "" {
		return c
	}
	c = c.Clone()
	c.ServerName, _, _ = net.SplitHostPort(addr)
	return c
}
