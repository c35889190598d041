package proxy_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pires/go-proxyproto"
	"github.com/tidwall/gjson"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/proxy"
)

// dialFrom registers a go-sql-driver network that connects from the
// loopback address ip: every 127.0.0.x is a distinct client here.
func dialFrom(ip string) string {
	network := "tcp-from-" + ip
	mysql.RegisterDialContext(network, func(ctx context.Context, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return d.DialContext(ctx, "tcp", addr)
	})
	return network
}

// TestProxyProtocolThroughHAProxy puts a real HAProxy (send-proxy-v2) in
// front of Sluice and MariaDB, trusting Sluice's PROXY headers
// (proxy_protocol_networks), behind it: a client connecting from
// 127.0.0.7 is 127.0.0.7 to Sluice's account check, to the server's
// USER(), host-based grants and processlist, and to the audit trail; a
// header from an untrusted source and a trusted source without one are
// refused.
func TestProxyProtocolThroughHAProxy(t *testing.T) {
	hp, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy not installed (make deps installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, q := range []string{
		"SET GLOBAL proxy_protocol_networks = '127.0.0.1/32'",
		"CREATE USER IF NOT EXISTS 'pp_only7'@'127.0.0.7' IDENTIFIED BY 'pp7pass'",
		"GRANT SELECT ON app.* TO 'pp_only7'@'127.0.0.7'",
	} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_ = topo.Primary.Exec(context.Background(), "SET GLOBAL proxy_protocol_networks = ''")
		_ = topo.Primary.Exec(context.Background(), "DROP USER IF EXISTS 'pp_only7'@'127.0.0.7'")
	})

	s := startSluice(t, proxy.Config{ConnectTimeout: 2 * time.Second,
		ProxyProtocolNetworks: []string{"127.0.0.1"}, ProxyProtocolServers: map[string]bool{"primary": true}})
	sink := &recordSink{}
	s.srv.SetGenlog(audit.NewGenlog(audit.Config{Topic: "t", Proxy: "test"}, sink))

	front := lab.FreeAddr(t)
	cfg := fmt.Sprintf(`defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend mysql
    bind %s
    default_backend sluice
backend sluice
    server sluice %s send-proxy-v2
`, front, s.addr)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lab.StartProcess(t, "haproxy", lab.Listening(front), hp, "-db", "-f", path)

	open := func(from, user, pass string) *sql.DB {
		c := mysql.NewConfig()
		c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, pass, dialFrom(from), front, "app"
		c.Timeout = 5 * time.Second
		db, err := sql.Open("mysql", c.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}

	// From 127.0.0.7: the account allowed only from there logs in, and the
	// server sees the client, not Sluice.
	db7 := open("127.0.0.7", "pp_only7", "pp7pass")
	var user, host string
	if err := db7.QueryRowContext(ctx, "SELECT USER(), (SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID())").Scan(&user, &host); err != nil {
		t.Fatalf("pp_only7 from 127.0.0.7 through HAProxy and Sluice: %v", err)
	}
	if user != "pp_only7@127.0.0.7" || !strings.HasPrefix(host, "127.0.0.7:") {
		t.Fatalf("the server sees USER() %q, processlist host %q; want pp_only7@127.0.0.7 and 127.0.0.7:port", user, host)
	}
	// An account of any host: the server still sees where the client is.
	if err := open("127.0.0.7", "app", "apppass").QueryRowContext(ctx, "SELECT USER()").Scan(&user); err != nil || user != "app@127.0.0.7" {
		t.Fatalf("app from 127.0.0.7: USER() %q, %v", user, err)
	}
	// From 127.0.0.8: Sluice refuses the account as the server would.
	err = open("127.0.0.8", "pp_only7", "pp7pass").PingContext(ctx)
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1045 || !strings.Contains(me.Message, "127.0.0.8") {
		t.Fatalf("pp_only7 from 127.0.0.8: %v; want 1045 naming 127.0.0.8", err)
	}
	// The audit trail names the clients: each login's record (the refused
	// one's is written as its session ends, after the client has its error).
	logins := map[string]bool{}
	lab.WaitFor(t, "the refused login's auth record", 5*time.Second, func() bool {
		for _, r := range sink.all() {
			if g := gjson.Parse(r); g.Get("type").String() == "auth" {
				ip, _, _ := net.SplitHostPort(g.Get("client").String())
				logins[fmt.Sprintf("%s %v %s", g.Get("user"), g.Get("ok"), ip)] = true
			}
		}
		return logins["pp_only7 false 127.0.0.8"]
	})
	for _, want := range []string{"pp_only7 true 127.0.0.7", "app true 127.0.0.7"} {
		if !logins[want] {
			t.Errorf("no auth record %q among %v", want, logins)
		}
	}

	sessions := s.srv.Sessions()
	// A header from a source Sluice does not trust (127.0.0.9) is refused:
	// the greeting, then the connection ends without a session.
	conn := rawDial(t, "127.0.0.9", s.addr)
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("10.9.9.9"), Port: 1234}, conn.RemoteAddr())
	if _, err := h.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	if rest := readAll(t, conn); !strings.Contains(rest, "PROXY protocol header refused") {
		t.Fatalf("untrusted header: the connection got %q; want an error naming proxy_protocol_networks", rest)
	}
	// A trusted source (HAProxy's 127.0.0.1) without a header: no greeting,
	// closed once the header is overdue.
	conn = rawDial(t, "127.0.0.1", s.addr)
	if rest := readAll(t, conn); rest != "" {
		t.Fatalf("trusted source without a header got %q; want the connection closed unanswered", rest)
	}
	for deadline := time.Now().Add(5 * time.Second); s.srv.Sessions() != sessions; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions after the refused connections, %d before", s.srv.Sessions(), sessions)
		}
	}
}

func rawDial(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readAll reads what the connection gets until Sluice closes it (within
// 10 s), as text.
func readAll(t *testing.T, conn net.Conn) string {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the connection was not closed: %v (got %q)", err, b)
	}
	return string(b)
}
