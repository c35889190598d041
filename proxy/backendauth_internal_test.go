package proxy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/server"

	"github.com/sluice-proxy/sluice/internal/testenv/testpki"
)

// mysql8StandIn serves the MySQL protocol with go-mysql's server package,
// which implements caching_sha2_password as MySQL 8 does (fast path from
// its cache, full authentication over TLS or with RSA): no MySQL server
// package is available here. It offers caching_sha2_password in its
// handshake, as MySQL 8.4 does.
type mysql8StandIn struct {
	srv  *server.Server
	addr string
	ca   *x509.CertPool
	// fastAuths counts caching_sha2 fast authentications (AuthMoreData 0x03).
	fastAuths atomic.Int32
}

// sniffConn counts the fast-auth packets a server connection writes.
type sniffConn struct {
	net.Conn
	n *atomic.Int32
}

func (c sniffConn) Write(p []byte) (int, error) {
	if len(p) == 6 && p[0] == 2 && p[1] == 0 && p[2] == 0 && p[4] == mysql.MORE_DATE_HEADER && p[5] == sha2FastOK {
		c.n.Add(1)
	}
	return c.Conn.Write(p)
}

func startMySQL8StandIn(t *testing.T, users map[string][2]string) *mysql8StandIn {
	t.Helper()
	dir := t.TempDir()
	if err := testpki.Write(dir); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := server.NewServer("8.0.36-standin", mysql.DEFAULT_COLLATION_ID, mysql.AUTH_CACHING_SHA2_PASSWORD, key,
		&tls.Config{Certificates: []tls.Certificate{cert}})
	auth := server.NewInMemoryAuthenticationHandler(mysql.AUTH_CACHING_SHA2_PASSWORD)
	for user, pw := range users {
		if err := auth.AddUser(user, pw[0], pw[1]); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mysql8StandIn{srv: srv, addr: ln.Addr().String(), ca: pool}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				conn, err := srv.NewCustomizedConn(sniffConn{Conn: c, n: &m.fastAuths}, auth, server.EmptyHandler{})
				if err != nil {
					return
				}
				for !conn.Closed() {
					if err := conn.HandleCommand(); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return m
}

// TestBackendLoginCachingSHA2 logs in to a MySQL-8 stand-in with
// caching_sha2_password: full authentication with RSA (no TLS) and over
// TLS, then the fast path from the server's cache; a native account with
// SHA1(password) alone; and the errors when Sluice lacks the password.
func TestBackendLoginCachingSHA2(t *testing.T) {
	mysql8 := startMySQL8StandIn(t, map[string][2]string{
		"sha2user":   {"sha2-secret", mysql.AUTH_CACHING_SHA2_PASSWORD},
		"nativeuser": {"native-secret", mysql.AUTH_NATIVE_PASSWORD},
	})
	dial := func(login Login) error {
		t.Helper()
		login.Capabilities, login.Collation = proxyCapabilities, 45
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := DialBackend(ctx, "mysql8", mysql8.addr, login)
		if err != nil {
			return err
		}
		defer b.Close()
		if b.Handshake().Plugin != pluginSHA2 {
			t.Fatalf("the stand-in offered %q, not caching_sha2_password", b.Handshake().Plugin)
		}
		return b.command([]byte{mysql.COM_PING})
	}
	tlsCfg := &tls.Config{RootCAs: mysql8.ca, ServerName: "127.0.0.1"}
	pw := []byte("sha2-secret")

	// No entry in the server's cache: full authentication, RSA-encrypted
	// with the key Sluice asks the server for.
	if err := dial(Login{User: "sha2user", Password: pw}); err != nil {
		t.Fatalf("full authentication with RSA: %v", err)
	}
	// Now the server caches SHA256(SHA256(password)): the fast path.
	if err := dial(Login{User: "sha2user", Password: pw}); err != nil || mysql8.fastAuths.Load() != 1 {
		t.Fatalf("fast authentication: %v (%d fast authentications)", err, mysql8.fastAuths.Load())
	}
	// Full authentication over TLS: the password in clear, encrypted by TLS.
	mysql8.srv.InvalidateCache("sha2user", "127.0.0.1")
	if err := dial(Login{User: "sha2user", Password: pw, TLS: tlsCfg}); err != nil || mysql8.fastAuths.Load() != 1 {
		t.Fatalf("full authentication over TLS: %v (%d fast authentications)", err, mysql8.fastAuths.Load())
	}
	// A wrong password: the server's own refusal.
	err := dial(Login{User: "sha2user", Password: []byte("nope")})
	var se *SQLError
	if !errors.As(err, &se) || se.Code != mysql.ER_ACCESS_DENIED_ERROR {
		t.Fatalf("wrong password: %v; want 1045", err)
	}
	// Without the password Sluice cannot answer caching_sha2_password.
	s1 := sha1.Sum(pw)
	if err := dial(Login{User: "sha2user", Stage1: s1[:]}); err == nil || !strings.Contains(err.Error(), "needs the account's password") {
		t.Fatalf("caching_sha2 without the password: %v", err)
	}
	// A native account on a server that offers caching_sha2: Sluice
	// answers natively with SHA1(password), never needing the password.
	n1 := sha1.Sum([]byte("native-secret"))
	if err := dial(Login{User: "nativeuser", Stage1: n1[:]}); err != nil {
		t.Fatalf("native account with stage1: %v", err)
	}
	if err := dial(Login{User: "nativeuser", Password: []byte("native-secret"), TLS: tlsCfg}); err != nil {
		t.Fatalf("native account with the password: %v", err)
	}
}
