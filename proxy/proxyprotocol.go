package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pires/go-proxyproto"
)

// PROXY protocol (HAProxy's, v1 and v2) in both directions:
//
//   - in: a load balancer in proxy_protocol_networks puts a header before
//     the client's bytes naming the client's address, which then stands for
//     the client everywhere (account host matching, max_user_connections,
//     the audit trail, /v1/sessions). A header is required from those
//     sources, so a balancer that lost its send-proxy setting is noticed
//     rather than every client becoming the balancer, and refused from any
//     other, which would otherwise choose its own address.
//   - out: to a server marked proxy_protocol, each session's connection
//     starts with a v2 header naming that session's client, so MariaDB's
//     host-based grants and processlist see it too. Only a connection that
//     serves one client can carry its address: service connections (the
//     monitor, the account loader) send none.

// proxyHeaderFrom decides whether a connection from peer must start with a
// PROXY header: true when peer is in one of the trusted networks.
func proxyHeaderFrom(peer netip.Addr, trusted []netip.Prefix) bool {
	peer = peer.Unmap()
	for _, p := range trusted {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// parseNetworks reads proxy_protocol_networks: CIDRs or single addresses.
func parseNetworks(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := parseNetwork(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func parseNetwork(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR (10.0.0.0/24) nor an address (10.0.0.7)", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// errProxyHeader marks a connection refused for its PROXY header, or its
// lack of one.
var errProxyHeader = errors.New("PROXY protocol")

// acceptProxyHeader applies the PROXY protocol to a new client connection
// before the greeting: from a trusted source it reads the header within
// timeout and returns the client's address it names (the connection's own
// for a LOCAL header: the balancer's health check).
func acceptProxyHeader(c *PacketIO, peer net.Addr, timeout time.Duration) (net.Addr, error) {
	_ = c.Conn().SetReadDeadline(time.Now().Add(timeout))
	defer c.Conn().SetReadDeadline(time.Time{})
	h, err := proxyproto.Read(c.r)
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		return nil, fmt.Errorf("%w: %s is in proxy_protocol_networks but sent no PROXY header; configure the balancer to send one (HAProxy: send-proxy-v2), or remove its address from proxy_protocol_networks", errProxyHeader, peer)
	case err != nil:
		return nil, fmt.Errorf("%w: bad header from %s: %w", errProxyHeader, peer, err)
	case h.Command.IsLocal():
		return peer, nil
	case h.SourceAddr == nil:
		return nil, fmt.Errorf("%w: header from %s names no client address", errProxyHeader, peer)
	}
	return h.SourceAddr, nil
}

// refuseProxyHeader reports a PROXY header where none is trusted: read
// before the handshake response, whose first bytes cannot be a header's.
func refuseProxyHeader(c *PacketIO, peer net.Addr) error {
	if _, err := proxyproto.Read(c.r); errors.Is(err, proxyproto.ErrNoProxyProtocol) {
		return nil
	}
	return fmt.Errorf("%w: %s sent a PROXY header but is not in proxy_protocol_networks; add the balancer's address there to trust it", errProxyHeader, peer)
}

// sendProxyHeader starts a connection to a server with a v2 header naming
// client as the source and the server as the destination.
func sendProxyHeader(conn net.Conn, client net.Addr) error {
	h := proxyproto.HeaderProxyFromAddrs(2, client, conn.RemoteAddr())
	if _, err := h.WriteTo(conn); err != nil {
		return fmt.Errorf("send PROXY header: %w", err)
	}
	return nil
}
