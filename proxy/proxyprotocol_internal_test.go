package proxy

import (
	"net/netip"
	"testing"
)

func TestProxyHeaderFrom(t *testing.T) {
	trusted, err := parseNetworks([]string{"10.0.0.0/24", "192.168.1.7", "fd00::/8"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		peer string
		want bool
	}{
		{"10.0.0.1", true},
		{"10.0.0.255", true},
		{"10.0.1.1", false},
		{"192.168.1.7", true},
		{"192.168.1.8", false},
		{"::ffff:10.0.0.9", true}, // IPv4 on a dual-stack listener
		{"fd00::1", true},
		{"fe80::1", false},
		{"127.0.0.1", false},
	} {
		if got := proxyHeaderFrom(netip.MustParseAddr(c.peer), trusted); got != c.want {
			t.Errorf("%s: header required %v, want %v", c.peer, got, c.want)
		}
	}
	if got := proxyHeaderFrom(netip.MustParseAddr("10.0.0.1"), nil); got {
		t.Error("no networks configured: no header may be required")
	}
}

func TestParseNetwork(t *testing.T) {
	for _, c := range []struct {
		in, want string
		bad      bool
	}{
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: "10.1.2.3", want: "10.1.2.3/32"},
		{in: "::ffff:10.1.2.3", want: "10.1.2.3/32"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "10.0.0.0/33", bad: true},
		{in: "haproxy.local", bad: true},
		{in: "", bad: true},
	} {
		p, err := parseNetwork(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("%q: accepted as %v", c.in, p)
			}
			continue
		}
		if err != nil || p.String() != c.want {
			t.Errorf("%q: %v, %v; want %s", c.in, p, err, c.want)
		}
	}
}
