package proxy_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/client"
	mysqlconst "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-sql-driver/mysql"
	tidbauth "github.com/pingcap/tidb/pkg/parser/auth"
	"github.com/tidwall/gjson"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/internal/testenv/testpki"
	"github.com/sluice-proxy/sluice/proxy"
	"github.com/sluice-proxy/sluice/router"
)

var pkiOnce struct {
	sync.Once
	dir string
	err error
}

// testPKI writes a CA and a server certificate for 127.0.0.1 once, and
// registers the CA with go-sql-driver as "sluice-ca".
func testPKI(t *testing.T) (dir string, server *tls.Config) {
	t.Helper()
	pkiOnce.Do(func() {
		pkiOnce.dir, pkiOnce.err = os.MkdirTemp("", "sluice-auth-pki-")
		if pkiOnce.err == nil {
			pkiOnce.err = testpki.Write(pkiOnce.dir)
		}
		if pkiOnce.err != nil {
			return
		}
		ca, err := os.ReadFile(filepath.Join(pkiOnce.dir, "ca.pem"))
		if err != nil {
			pkiOnce.err = err
			return
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		pkiOnce.err = mysql.RegisterTLSConfig("sluice-ca", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	})
	if pkiOnce.err != nil {
		t.Fatal(pkiOnce.err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(pkiOnce.dir, "server.pem"), filepath.Join(pkiOnce.dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return pkiOnce.dir, &tls.Config{Certificates: []tls.Certificate{cert}}
}

// goLogin logs in with go-sql-driver and runs a write and a read.
type clientOpts struct {
	tls, cleartext bool
}

func goLogin(s *sluice, user, pass string, o clientOpts) (string, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, pass, "tcp", s.addr, "app"
	cfg.Timeout = 5 * time.Second
	cfg.AllowCleartextPasswords = o.cleartext
	if o.tls {
		cfg.TLSConfig = "sluice-ca"
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "INSERT INTO auth_rows (who) VALUES ('go')"); err != nil {
		return "", err
	}
	var who string
	err = db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&who)
	return who, err
}

func wantCode(t *testing.T, what string, err error, code uint16, contains ...string) {
	t.Helper()
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != code {
		t.Fatalf("%s: %v; want error %d", what, err, code)
	}
	for _, c := range contains {
		if !strings.Contains(me.Message, c) {
			t.Fatalf("%s: %q does not say %q", what, me.Message, c)
		}
	}
}

// pyLogin logs in with PyMySQL (PyNaCl for client_ed25519), writes and
// reads; it prints "OK <current_user>" or "ERR <code>".
const pyLogin = `
import os, sys, pymysql
kw = dict(host=os.environ["H"], port=int(os.environ["P"]), user=os.environ["U"], password=os.environ["PW"], database="app")
if os.environ.get("CA"):
    kw["ssl"] = {"ca": os.environ["CA"]}
try:
    c = pymysql.connect(**kw)
except pymysql.err.OperationalError as e:
    print("ERR", e.args[0]); sys.exit(0)
with c.cursor() as cur:
    cur.execute("INSERT INTO auth_rows (who) VALUES ('pymysql')")
    c.commit()
    cur.execute("SELECT CURRENT_USER()")
    print("OK", cur.fetchone()[0])
`

func runPy(t *testing.T, s *sluice, user, pass, ca string) string {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import pymysql, nacl").Run(); err != nil {
		t.Skip("PyMySQL or PyNaCl missing (python3-pymysql, python3-nacl; scripts/install-deps.sh)")
	}
	host, port, _ := net.SplitHostPort(s.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", "-c", pyLogin)
	cmd.Env = append(os.Environ(), "H="+host, "P="+port, "U="+user, "PW="+pass, "CA="+ca)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pymysql: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// runCLI runs the mariadb CLI (libmariadb's client plugins), password in
// MYSQL_PWD; it returns the output and whether it succeeded.
func runCLI(t *testing.T, s *sluice, user, pass string, args ...string) (string, bool) {
	t.Helper()
	cli, err := exec.LookPath("mariadb")
	if err != nil {
		t.Skip("mariadb client not installed")
	}
	host, port, _ := net.SplitHostPort(s.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"--protocol=TCP", "-h", host, "-P", port, "-u", user, "-N", "-B"}, args...)
	all = append(all, "app", "-e", "INSERT INTO auth_rows (who) VALUES ('cli'); SELECT CURRENT_USER();")
	cmd := exec.CommandContext(ctx, cli, all...)
	cmd.Env = append(os.Environ(), "MYSQL_PWD="+pass)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err == nil
}

// authRecords are the audit trail's auth records as "user plugin ok".
func authRecords(sink *recordSink) map[string]bool {
	out := map[string]bool{}
	for _, r := range sink.all() {
		if g := gjson.Parse(r); g.Get("type").String() == "auth" {
			out[g.Get("user").String()+" "+g.Get("plugin").String()+" "+g.Get("ok").String()] = true
		}
	}
	return out
}

func TestEd25519Accounts(t *testing.T) {
	ctx := context.Background()
	if err := topo.InstallSoname(ctx, "auth_ed25519"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE OR REPLACE USER 'eduser'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('edpass-9')",
		"GRANT ALL PRIVILEGES ON app.* TO 'eduser'@'%'",
		"CREATE TABLE IF NOT EXISTS app.auth_rows (id INT AUTO_INCREMENT PRIMARY KEY, who VARCHAR(32))",
	} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { _ = topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'eduser'@'%'") })
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}

	// Sluice derives the key from the password as MariaDB does.
	db, err := sql.Open("mysql", topo.Primary.DSN("monitor", "monpass", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stored string
	if err := db.QueryRow("SELECT authentication_string FROM mysql.user WHERE user = 'eduser'").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if want := base64.RawStdEncoding.EncodeToString(proxy.Ed25519PublicKey([]byte("edpass-9"))); stored != want {
		t.Fatalf("MariaDB stores %q for the password, Sluice derives %q", stored, want)
	}

	dir, serverTLS := testPKI(t)
	var logs lab.SyncBuffer
	// readwritesplit: each session logs in to the primary and a replica
	// with what Sluice learned.
	s := startLogged(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{TLS: serverTLS}, &logs)
	sink := &recordSink{}
	s.srv.SetGenlog(audit.NewGenlog(audit.Config{Topic: "t", Proxy: "test"}, sink))

	// Sluice does not hold the password yet and the client is not on
	// TLS: refused, naming the plugin and the fix.
	_, err = goLogin(s, "eduser", "edpass-9", clientOpts{})
	wantCode(t, "ed25519 without TLS, password unknown", err, 3159, "plugin ed25519", "TLS")
	if out, ok := runCLI(t, s, "eduser", "edpass-9", "--skip-ssl"); ok || !strings.Contains(out, "plugin ed25519") {
		t.Fatalf("mariadb CLI without TLS, password unknown: ok=%v %q", ok, out)
	}
	// Over TLS, a client that does not allow mysql_clear_password stops.
	if _, err := goLogin(s, "eduser", "edpass-9", clientOpts{tls: true}); err == nil {
		t.Fatal("a client that does not allow cleartext passwords logged in")
	}
	// Over TLS with cleartext allowed: a wrong password is refused, the
	// right one learned (checked against the public key) and used to log
	// in to MariaDB with client_ed25519.
	_, err = goLogin(s, "eduser", "wrong-pw-1", clientOpts{tls: true, cleartext: true})
	wantCode(t, "wrong password over TLS", err, 1045, "Access denied for user 'eduser'")
	who, err := goLogin(s, "eduser", "edpass-9", clientOpts{tls: true, cleartext: true})
	if err != nil || who != "eduser@%" {
		t.Fatalf("ed25519 account over TLS: %q, %v", who, err)
	}
	// Learned: now every client logs in with client_ed25519, even
	// without TLS, and Sluice signs MariaDB's nonce with the password.
	if who, err := goLogin(s, "eduser", "edpass-9", clientOpts{}); err != nil || who != "eduser@%" {
		t.Fatalf("go-sql-driver client_ed25519: %q, %v", who, err)
	}
	_, err = goLogin(s, "eduser", "wrong-pw-2", clientOpts{})
	wantCode(t, "go-sql-driver client_ed25519, wrong password", err, 1045)
	if out := runPy(t, s, "eduser", "edpass-9", ""); out != "OK eduser@%" {
		t.Fatalf("PyMySQL client_ed25519: %q", out)
	}
	if out := runPy(t, s, "eduser", "wrong-pw-3", ""); out != "ERR 1045" {
		t.Fatalf("PyMySQL client_ed25519, wrong password: %q", out)
	}
	if out := runPy(t, s, "eduser", "edpass-9", filepath.Join(dir, "ca.pem")); out != "OK eduser@%" {
		t.Fatalf("PyMySQL client_ed25519 over TLS: %q", out)
	}
	// PyMySQL sends mysql_clear_password over TLS: Sluice learns from it.
	s.accounts.ForgetPasswords()
	if out := runPy(t, s, "eduser", "edpass-9", filepath.Join(dir, "ca.pem")); out != "OK eduser@%" || s.accounts.LearnedPasswords() != 1 {
		t.Fatalf("PyMySQL over TLS, learning the password: %q", out)
	}
	if out, ok := runCLI(t, s, "eduser", "edpass-9"); !ok || out != "eduser@%" {
		t.Fatalf("mariadb CLI client_ed25519: ok=%v %q", ok, out)
	}
	if out, ok := runCLI(t, s, "eduser", "wrong-pw-4", "--ssl", "--ssl-ca="+filepath.Join(dir, "ca.pem")); ok || !strings.Contains(out, "1045") {
		t.Fatalf("mariadb CLI over TLS, wrong password: ok=%v %q", ok, out)
	}
	if out := runJDBC(t, s, "eduser", "edpass-9", ""); out != "OK eduser@%" {
		t.Fatalf("MariaDB JDBC client_ed25519: %q", out)
	}
	if out := runJDBC(t, s, "eduser", "wrong-pw-6", "&useSsl=true&trustServerCertificate=true"); out != "ERR 1045" {
		t.Fatalf("MariaDB JDBC over TLS, wrong password: %q", out)
	}
	// The JDBC driver sends mysql_clear_password over TLS too.
	s.accounts.ForgetPasswords()
	if out := runJDBC(t, s, "eduser", "edpass-9", "&useSsl=true&trustServerCertificate=true"); out != "OK eduser@%" {
		t.Fatalf("MariaDB JDBC over TLS, learning the password: %q", out)
	}
	// COM_CHANGE_USER to the ed25519 account: the client answered for
	// native, Sluice switches it to client_ed25519 with a fresh nonce.
	changeToEd := func(password string) []byte {
		rec := &recordingConn{}
		dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			rec.Conn = conn
			return rec, err
		}
		c, err := gomysql.ConnectWithDialer(ctx, "tcp", s.addr, "app", "apppass", "", dialer)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.ResetSequence()
		if err := c.WritePacket(changeUserPacket("eduser", password, rec.scramble(), "app")); err != nil {
			t.Fatal(err)
		}
		pkt, err := c.ReadPacket()
		if err != nil || len(pkt) != 1+len("client_ed25519")+1+32 || string(pkt[1:15]) != "client_ed25519" {
			t.Fatalf("COM_CHANGE_USER to eduser: %q, %v; want a switch to client_ed25519 with a 32-byte nonce", pkt, err)
		}
		sig, err := mysqlconst.CalcEd25519Password(pkt[16:], password)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WritePacket(append([]byte{0, 0, 0, 0}, sig...)); err != nil {
			t.Fatal(err)
		}
		if pkt, err = c.ReadPacket(); err != nil || pkt[0] != mysqlconst.OK_HEADER {
			return pkt
		}
		r, err := c.Execute("SELECT CURRENT_USER()")
		if err != nil {
			t.Fatal(err)
		}
		who, _ := r.GetString(0, 0)
		return []byte(who)
	}
	if got := changeToEd("edpass-9"); string(got) != "eduser@%" {
		t.Fatalf("COM_CHANGE_USER to eduser: %q", got)
	}
	if got := changeToEd("wrong-pw-5"); len(got) < 3 || got[0] != mysqlconst.ERR_HEADER || got[1] != 0x15 || got[2] != 0x04 {
		t.Fatalf("COM_CHANGE_USER to eduser, wrong password: %q; want error 1045", got)
	}
	// The native accounts go on as before, with every client.
	if who, err := goLogin(s, "app", "apppass", clientOpts{}); err != nil || who != "app@%" {
		t.Fatalf("native account: %q, %v", who, err)
	}
	if out := runPy(t, s, "app", "apppass", ""); out != "OK app@%" {
		t.Fatalf("PyMySQL native: %q", out)
	}

	// The sessions ran on the primary and on replicas.
	servers := map[string]bool{}
	for _, r := range sink.all() {
		if g := gjson.Parse(r); g.Get("type").String() == "query" && g.Get("user").String() == "eduser" {
			servers[g.Get("server").String()] = true
		}
	}
	if !servers["primary"] || len(servers) < 2 {
		t.Errorf("eduser's statements ran on %v; want the primary and a replica", servers)
	}
	// The trail names the plugin of each attempt.
	recs := authRecords(sink)
	for _, want := range []string{
		"eduser client_ed25519 false", "eduser mysql_clear_password false", "eduser mysql_clear_password true",
		"eduser client_ed25519 true", "app mysql_native_password true",
	} {
		if !recs[want] {
			t.Errorf("no auth record %q among %v", want, recs)
		}
	}
	// A new password set on the servers: the old one is wiped at the
	// reload the failed check triggers, and Sluice must learn the new one.
	if err := topo.Primary.Exec(ctx, "ALTER USER 'eduser'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('edpass-10')"); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	// The old password still passes Sluice's stale view, but the server
	// refuses it: Sluice forgets it. With pooling a login reaches no
	// server: the periodic reload (users_refresh_interval) refuses it.
	old := clientOpts{}
	if os.Getenv("SLUICE_TEST_POOL") != "" {
		if err := s.accounts.Load(ctx); err != nil {
			t.Fatal(err)
		}
		old = clientOpts{tls: true, cleartext: true} // checked against the new key
	}
	_, err = goLogin(s, "eduser", "edpass-9", old)
	wantCode(t, "the old password, refused by the server", err, 1045)
	if n := s.accounts.LearnedPasswords(); n != 0 {
		t.Fatalf("%d passwords kept after the server refused the learned one", n)
	}
	_, err = goLogin(s, "eduser", "edpass-10", clientOpts{})
	wantCode(t, "new password, Sluice holds the old one", err, 3159, "plugin ed25519")
	if who, err := goLogin(s, "eduser", "edpass-10", clientOpts{tls: true, cleartext: true}); err != nil || who != "eduser@%" {
		t.Fatalf("new password over TLS: %q, %v", who, err)
	}
	if who, err := goLogin(s, "eduser", "edpass-10", clientOpts{}); err != nil || who != "eduser@%" {
		t.Fatalf("new password, client_ed25519: %q, %v", who, err)
	}
	_, err = goLogin(s, "eduser", "edpass-9", clientOpts{})
	wantCode(t, "the old password", err, 1045)
	// A Sluice that does not list client_ed25519 (clients without it, as
	// MySQL's): the ed25519 account logs in with caching_sha2_password,
	// whose full authentication Sluice checks against the public key.
	noEd := startLogged(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second},
		proxy.Config{TLS: serverTLS, Auth: proxy.AuthConfig{Plugins: []string{"mysql_native_password", "caching_sha2_password"}}}, &logs)
	_, err = goLogin(noEd, "eduser", "wrong-pw-7", clientOpts{tls: true})
	wantCode(t, "ed25519 account over caching_sha2, wrong password", err, 1045)
	if who, err := goLogin(noEd, "eduser", "edpass-10", clientOpts{tls: true}); err != nil || who != "eduser@%" {
		t.Fatalf("ed25519 account over caching_sha2, full authentication: %q, %v", who, err)
	}
	if out := runPy(t, noEd, "eduser", "edpass-10", ""); out != "OK eduser@%" {
		t.Fatalf("PyMySQL, ed25519 account over caching_sha2, fast path: %q", out)
	}
	// Dropping the account on the servers wipes the learned password.
	if s.accounts.LearnedPasswords() != 1 {
		t.Fatalf("%d passwords learned, want 1", s.accounts.LearnedPasswords())
	}
	if err := topo.Primary.Exec(ctx, "DROP USER 'eduser'@'%'"); err != nil {
		t.Fatal(err)
	}
	if err := s.accounts.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.accounts.LearnedPasswords(); n != 0 {
		t.Fatalf("%d passwords kept after the account was dropped", n)
	}
	// No password in the log or the trail.
	all := logs.String() + strings.Join(sink.all(), "\n")
	for _, pw := range []string{"edpass-9", "edpass-10", "wrong-pw-1", "wrong-pw-2", "wrong-pw-3", "wrong-pw-4", "wrong-pw-5", "wrong-pw-6", "wrong-pw-7", "apppass"} {
		if strings.Contains(all, pw) {
			t.Errorf("the password %q appears in the log or the trail", pw)
		}
	}
}

// writeRSAKeys writes a key pair for auth.rsa_private_key/rsa_public_key.
func writeRSAKeys(t *testing.T) (priv, pub string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "private_key.pem"), filepath.Join(dir, "public_key.pem")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// TestCachingSHA2Clients: an account Sluice knows as caching_sha2_password
// with MySQL 8's $A$005$ hash (MariaDB has no such plugin: on the servers
// the same account is native, which Sluice logs in to with SHA1 of the
// password it learned). Full authentication over TLS and with RSA keys,
// then the fast path, with go-sql-driver, PyMySQL and the mariadb CLI.
func TestCachingSHA2Clients(t *testing.T) {
	ctx := context.Background()
	for _, q := range []string{
		"CREATE OR REPLACE USER 'sha2app'@'%' IDENTIFIED BY 'sha2-pass-7'",
		"GRANT ALL PRIVILEGES ON app.* TO 'sha2app'@'%'",
		"CREATE TABLE IF NOT EXISTS app.auth_rows (id INT AUTO_INCREMENT PRIMARY KEY, who VARCHAR(32))",
	} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { _ = topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'sha2app'@'%'") })
	acct := proxy.Account{User: "sha2app", Host: "%", Plugin: "caching_sha2_password",
		SHA2Hash: tidbauth.NewHashPassword("sha2-pass-7", "caching_sha2_password")}
	dir, serverTLS := testPKI(t)
	rcfg := router.Config{Type: "readconnroute", Target: "primary", MaxReplicationLag: 10 * time.Second}
	var logs lab.SyncBuffer
	sink := &recordSink{}

	// Without RSA keys: TLS or nothing until Sluice holds the password.
	s := startLogged(t, rcfg, proxy.Config{TLS: serverTLS}, &logs, acct)
	s.srv.SetGenlog(audit.NewGenlog(audit.Config{Topic: "t", Proxy: "test"}, sink))
	_, err := goLogin(s, "sha2app", "sha2-pass-7", clientOpts{})
	wantCode(t, "caching_sha2 without TLS or RSA keys", err, 3159, "caching_sha2_password", "TLS")
	_, err = goLogin(s, "sha2app", "wrong-pw-5", clientOpts{tls: true})
	wantCode(t, "caching_sha2 full authentication, wrong password", err, 1045, "Access denied for user 'sha2app'")
	if who, err := goLogin(s, "sha2app", "sha2-pass-7", clientOpts{tls: true}); err != nil || who != "sha2app@%" {
		t.Fatalf("caching_sha2 full authentication over TLS: %q, %v", who, err)
	}
	// Sluice holds it now: the fast path, with or without TLS.
	if who, err := goLogin(s, "sha2app", "sha2-pass-7", clientOpts{}); err != nil || who != "sha2app@%" {
		t.Fatalf("go-sql-driver fast path: %q, %v", who, err)
	}
	_, err = goLogin(s, "sha2app", "wrong-pw-6", clientOpts{})
	wantCode(t, "fast path, wrong password", err, 1045)
	if out := runPy(t, s, "sha2app", "sha2-pass-7", ""); out != "OK sha2app@%" {
		t.Fatalf("PyMySQL fast path: %q", out)
	}
	if out := runPy(t, s, "sha2app", "wrong-pw-7", ""); out != "ERR 1045" {
		t.Fatalf("PyMySQL fast path, wrong password: %q", out)
	}
	if out, ok := runCLI(t, s, "sha2app", "sha2-pass-7", "--skip-ssl"); !ok || out != "sha2app@%" {
		t.Fatalf("mariadb CLI fast path: ok=%v %q", ok, out)
	}
	if out := runJDBC(t, s, "sha2app", "sha2-pass-7", ""); out != "OK sha2app@%" {
		t.Fatalf("MariaDB JDBC fast path: %q", out)
	}
	s.accounts.ForgetPasswords()
	if out := runJDBC(t, s, "sha2app", "sha2-pass-7", "&useSsl=true&trustServerCertificate=true"); out != "OK sha2app@%" {
		t.Fatalf("MariaDB JDBC full authentication over TLS: %q", out)
	}
	// Full authentication with the mariadb CLI over TLS.
	s.accounts.ForgetPasswords()
	if out, ok := runCLI(t, s, "sha2app", "sha2-pass-7", "--ssl-ca="+filepath.Join(dir, "ca.pem")); !ok || out != "sha2app@%" {
		t.Fatalf("mariadb CLI full authentication over TLS: ok=%v %q", ok, out)
	}
	if s.accounts.LearnedPasswords() != 1 {
		t.Fatal("the CLI's full authentication taught Sluice nothing")
	}

	// With RSA keys, and a handshake that offers caching_sha2_password
	// first: full authentication without TLS, the password RSA-encrypted.
	priv, pub := writeRSAKeys(t)
	r := startLogged(t, rcfg, proxy.Config{Auth: proxy.AuthConfig{RSAPrivateKey: priv, RSAPublicKey: pub,
		Plugins: []string{"caching_sha2_password", "mysql_native_password", "client_ed25519"}}}, &logs, acct)
	r.srv.SetGenlog(audit.NewGenlog(audit.Config{Topic: "t", Proxy: "test"}, sink))
	_, err = goLogin(r, "sha2app", "wrong-pw-8", clientOpts{})
	wantCode(t, "RSA full authentication, wrong password", err, 1045)
	if who, err := goLogin(r, "sha2app", "sha2-pass-7", clientOpts{}); err != nil || who != "sha2app@%" {
		t.Fatalf("go-sql-driver RSA full authentication: %q, %v", who, err)
	}
	r.accounts.ForgetPasswords()
	if out := runPy(t, r, "sha2app", "sha2-pass-7", ""); out != "OK sha2app@%" {
		t.Fatalf("PyMySQL RSA full authentication: %q", out)
	}
	if r.accounts.LearnedPasswords() != 1 {
		t.Fatal("PyMySQL's RSA full authentication taught Sluice nothing")
	}
	r.accounts.ForgetPasswords()
	if out := runJDBC(t, r, "sha2app", "sha2-pass-7", "&allowPublicKeyRetrieval=true"); out != "OK sha2app@%" {
		t.Fatalf("MariaDB JDBC RSA full authentication: %q", out)
	}
	// A native account behind a caching_sha2 handshake is switched back.
	if who, err := goLogin(r, "app", "apppass", clientOpts{}); err != nil || who != "app@%" {
		t.Fatalf("native account after a caching_sha2 handshake: %q, %v", who, err)
	}
	if out := runPy(t, r, "app", "apppass", ""); out != "OK app@%" {
		t.Fatalf("PyMySQL native account after a caching_sha2 handshake: %q", out)
	}

	// auth.plugins: [caching_sha2_password] alone: MariaDB's native
	// accounts too log in with it, their password checked against the
	// native hash in full authentication, then on the fast path.
	only := startLogged(t, rcfg, proxy.Config{TLS: serverTLS, Auth: proxy.AuthConfig{Plugins: []string{"caching_sha2_password"}}}, &logs)
	only.srv.SetGenlog(audit.NewGenlog(audit.Config{Topic: "t", Proxy: "test"}, sink))
	_, err = goLogin(only, "app", "apppass", clientOpts{})
	wantCode(t, "native account over caching_sha2 without TLS", err, 3159, "caching_sha2_password", "mysql_native_password")
	_, err = goLogin(only, "app", "wrong-pw-9", clientOpts{tls: true})
	wantCode(t, "native account over caching_sha2, wrong password", err, 1045)
	if who, err := goLogin(only, "app", "apppass", clientOpts{tls: true}); err != nil || who != "app@%" {
		t.Fatalf("native account, caching_sha2 full authentication: %q, %v", who, err)
	}
	if who, err := goLogin(only, "app", "apppass", clientOpts{}); err != nil || who != "app@%" {
		t.Fatalf("native account, caching_sha2 fast path: %q, %v", who, err)
	}
	if out, ok := runCLI(t, only, "app", "apppass", "--skip-ssl"); !ok || out != "app@%" {
		t.Fatalf("mariadb CLI, native account, caching_sha2 fast path: ok=%v %q", ok, out)
	}

	recs := authRecords(sink)
	for _, want := range []string{"sha2app caching_sha2_password true", "sha2app caching_sha2_password false", "app mysql_native_password true",
		"app caching_sha2_password true", "app caching_sha2_password false"} {
		if !recs[want] {
			t.Errorf("no auth record %q among %v", want, recs)
		}
	}
	all := logs.String() + strings.Join(sink.all(), "\n")
	for _, pw := range []string{"sha2-pass-7", "wrong-pw-5", "wrong-pw-6", "wrong-pw-7", "wrong-pw-8", "wrong-pw-9", "apppass"} {
		if strings.Contains(all, pw) {
			t.Errorf("the password %q appears in the log or the trail", pw)
		}
	}
}

// jdbcLogin logs in with the MariaDB JDBC driver (Connector/J), writes and
// reads; it prints "OK <current_user>" or "ERR <code>".
const jdbcLogin = `
import java.sql.*;
public class Login {
    public static void main(String[] a) throws Exception {
        try (Connection c = DriverManager.getConnection(a[0], System.getenv("U"), System.getenv("PW"))) {
            try (Statement s = c.createStatement()) {
                s.executeUpdate("INSERT INTO auth_rows (who) VALUES ('jdbc')");
                try (ResultSet r = s.executeQuery("SELECT CURRENT_USER()")) {
                    r.next();
                    System.out.println("OK " + r.getString(1));
                }
            }
        } catch (SQLException e) {
            System.out.println("ERR " + e.getErrorCode());
            System.err.println(e);
        }
    }
}
`

// runJDBC runs jdbcLogin with params appended to the URL.
func runJDBC(t *testing.T, s *sluice, user, pass, params string) string {
	t.Helper()
	const jar = "/usr/share/java/mariadb-java-client.jar"
	java, err := exec.LookPath("java")
	if _, serr := os.Stat(jar); err != nil || serr != nil {
		t.Skip("java or the MariaDB JDBC driver missing (libmariadb-java; scripts/install-deps.sh)")
	}
	src := filepath.Join(t.TempDir(), "Login.java")
	if err := os.WriteFile(src, []byte(jdbcLogin), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, java, "-cp", jar, src, "jdbc:mariadb://"+s.addr+"/app?connectTimeout=5000"+params)
	cmd.Env = append(os.Environ(), "U="+user, "PW="+pass)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("java: %v\n%s%s", err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("java: %s", stderr.String())
	}
	return strings.TrimSpace(string(out))
}
