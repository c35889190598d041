// Package tlstest checks TLS between clients and Sluice and between Sluice
// and the servers, on a MariaDB topology that has TLS enabled.
package tlstest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/internal/testenv/testpki"
)

var (
	topo   *lab.Topology
	binary string
	pki    string // directory of ca.pem, server.pem, server-key.pem, other-ca.pem
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	var err error
	if pki, err = os.MkdirTemp("", "sluice-pki-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(pki)
	if err := testpki.Write(pki); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return lab.MainWithSluice(m, lab.Options{Replicas: 1, ExtraArgs: []string{
		"--ssl-ca=" + filepath.Join(pki, "ca.pem"),
		"--ssl-cert=" + filepath.Join(pki, "server.pem"),
		"--ssl-key=" + filepath.Join(pki, "server-key.pem"),
	}}, func(t *lab.Topology, bin string) { topo, binary = t, bin })
}

type instance struct {
	*lab.Process
	listen, admin, broker string
	// dir holds the config, the broker's data and anything Sluice writes.
	dir string
}

func start(t *testing.T, tlsSection string) *instance {
	t.Helper()
	return startWith(t, "service_user: {user: monitor, password: monpass}\ngenlog: {enabled: true, topic: tls.audit}\n", tlsSection)
}

// startWith starts Sluice with the given service_user and genlog sections;
// it is ready once healthy, or when ready (if given) says so.
func startWith(t *testing.T, sections, tlsSection string, ready ...func(*instance) bool) *instance {
	t.Helper()
	dir := t.TempDir()
	in := &instance{listen: lab.FreeAddr(t), admin: lab.FreeAddr(t), broker: lab.FreeAddr(t), dir: dir}
	cfg := fmt.Sprintf("listen: %s\nadmin_listen: %s\nservers:\n%s"+
		"monitor: {interval: 200ms}\nbroker: {enabled: true, listen: %s, data_dir: %s}\n%s%s",
		in.listen, in.admin, lab.ServersYAML(topo.Servers(), nil), in.broker, filepath.Join(dir, "broker"), sections, tlsSection)
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	isReady := func() bool { return lab.Healthy(in.admin) }
	if len(ready) > 0 {
		isReady = func() bool { return ready[0](in) }
	}
	in.Process = lab.StartProcess(t, "sluice", isReady, binary, "serve", "--config", path)
	return in
}

func (in *instance) open(t *testing.T, tlsName string) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "app", "apppass", "tcp", in.listen, "app"
	cfg.Timeout = 5 * time.Second
	cfg.TLSConfig = tlsName
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func registerClientTLS(t *testing.T) {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(pki, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	if err := mysql.RegisterTLSConfig("sluice-ca", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
}

// backendCipher is the TLS cipher of the session's primary connection.
func backendCipher(t *testing.T, db *sql.DB) string {
	t.Helper()
	var name, cipher string
	if err := db.QueryRow("SHOW /* sluice: route=primary */ SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil {
		t.Fatal(err)
	}
	return cipher
}

func TestClientTLS(t *testing.T) {
	registerClientTLS(t)
	keys := fmt.Sprintf("tls: {cert: %s, key: %s}\n", filepath.Join(pki, "server.pem"), filepath.Join(pki, "server-key.pem"))
	in := start(t, keys)
	var one int
	if err := in.open(t, "sluice-ca").QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatalf("query over TLS: %v", err)
	}
	if err := in.open(t, "false").QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatalf("plain connection while TLS is optional: %v", err)
	}
	// The real CLI negotiates TLS and verifies Sluice's certificate.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	host, port, _ := net.SplitHostPort(in.listen)
	out, err := exec.CommandContext(ctx, "mariadb", "-h", host, "-P", port, "-uapp", "-papppass", "--ssl",
		"--ssl-ca="+filepath.Join(pki, "ca.pem"), "--ssl-verify-server-cert", "-e", "status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Cipher in use") {
		t.Fatalf("mariadb --ssl through Sluice: %v\n%s", err, out)
	}
	// The audit trail says which logins used TLS.
	lab.WaitFor(t, "auth records with and without TLS", 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, binary, "audit", "search", "--brokers", in.broker, "--topic", "tls.audit",
			"--where", `type=="auth" && ok==true`).Output()
		if err != nil {
			return false
		}
		var withTLS, without int
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var rec struct{ TLS bool }
			if json.Unmarshal([]byte(line), &rec) == nil {
				if rec.TLS {
					withTLS++
				} else {
					without++
				}
			}
		}
		return withTLS >= 2 && without >= 1
	})

	// tls.require refuses plain connections with error 3159.
	req := start(t, fmt.Sprintf("tls: {cert: %s, key: %s, require: true}\n", filepath.Join(pki, "server.pem"), filepath.Join(pki, "server-key.pem")))
	err = req.open(t, "false").Ping()
	var me *mysql.MySQLError
	if !errorsAs(err, &me) || me.Number != 3159 {
		t.Fatalf("plain connection with tls.require: %v, want error 3159", err)
	}
	if err := req.open(t, "sluice-ca").Ping(); err != nil {
		t.Fatalf("TLS connection with tls.require: %v", err)
	}
}

func TestBackendTLS(t *testing.T) {
	in := start(t, fmt.Sprintf("tls: {backend: true, backend_ca: %s}\n", filepath.Join(pki, "ca.pem")))
	if c := backendCipher(t, in.open(t, "false")); c == "" {
		t.Fatal("the backend connection is not TLS")
	}
	// Without tls.backend the backend link is plain: the check above could fail.
	plain := start(t, "")
	if c := backendCipher(t, plain.open(t, "false")); c != "" {
		t.Fatalf("backend cipher %q without tls.backend", c)
	}
	// A server whose certificate the CA did not sign is refused, by the
	// monitor too (so Sluice never becomes healthy): it says why.
	wrong := startWith(t, "service_user: {user: monitor, password: monpass}\ngenlog: {enabled: false}\n",
		fmt.Sprintf("tls: {backend: true, backend_ca: %s}\n", filepath.Join(pki, "other-ca.pem")),
		func(in *instance) bool { // the admin API answers, unhealthy
			resp, err := http.Get("http://" + in.admin + "/health")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
	lab.WaitFor(t, "the monitor to name the certificate problem", 20*time.Second, func() bool {
		return strings.Contains(wrong.Stderr.String(), "certificate signed by unknown authority")
	})
	if err := wrong.open(t, "false").Ping(); err == nil {
		t.Fatal("a session through Sluice whose servers' certificates it cannot verify")
	}
}

func errorsAs(err error, target **mysql.MySQLError) bool {
	me, ok := err.(*mysql.MySQLError)
	if ok {
		*target = me
	}
	return ok
}

// Under tls.backend the monitor and the account loader connect with TLS
// too: with a service user the servers accept over TLS only (REQUIRE SSL),
// Sluice finds the primary (the monitor) and logs clients in (the
// accounts it loaded); over a plain connection that user is refused.
func TestServiceConnectionsTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const user, pass = "svc_tls", "svcpass"
	for _, q := range []string{
		"CREATE USER '" + user + "'@'%' IDENTIFIED BY '" + pass + "' REQUIRE SSL",
		"GRANT SELECT ON mysql.* TO '" + user + "'@'%'",
		"GRANT ALL PRIVILEGES ON sluice.* TO '" + user + "'@'%'",
		"GRANT PROCESS, REPLICATION CLIENT, REPLICA MONITOR, SUPER, READ_ONLY ADMIN, RELOAD, BINLOG ADMIN ON *.* TO '" + user + "'@'%'",
	} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { topo.Primary.Exec(context.Background(), "DROP USER IF EXISTS '"+user+"'@'%'") })
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	// The servers refuse the user without TLS: the test could fail.
	plain, err := sql.Open("mysql", topo.Primary.DSN(user, pass, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.PingContext(ctx); err == nil {
		t.Fatal("the servers accept the REQUIRE SSL user over a plain connection")
	}
	// Started means healthy: the monitor found the primary over TLS.
	in := startWith(t, fmt.Sprintf("service_user: {user: %s, password: %s}\ngenlog: {enabled: false}\n", user, pass),
		fmt.Sprintf("tls: {backend: true, backend_ca: %s}\n", filepath.Join(pki, "ca.pem")))
	var one int
	if err := in.open(t, "false").QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatalf("login with accounts loaded over TLS: %v", err)
	}
	// The monitor holds its connection as that user, which can only be TLS.
	root, err := topo.Primary.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := root.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?", user).Scan(&n); err != nil || n == 0 {
		t.Fatalf("no connection of %s on the primary (%d, %v)", user, n, err)
	}
}
