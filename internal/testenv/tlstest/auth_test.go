package tlstest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// TestEd25519PasswordNowhere runs the sluice binary, with its audit trail
// in the bundled broker and debug logging, in front of MariaDB with an
// ed25519 account: Sluice learns the password over TLS, logs in to the
// servers with it, and the password appears in no log, record or file.
func TestEd25519PasswordNowhere(t *testing.T) {
	ctx := context.Background()
	if err := topo.InstallSoname(ctx, "auth_ed25519"); err != nil {
		t.Fatal(err)
	}
	const password = "Ed-Secret-4711"
	for _, q := range []string{
		"CREATE OR REPLACE USER 'edapp'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('" + password + "')",
		"GRANT ALL PRIVILEGES ON app.* TO 'edapp'@'%'",
		"CREATE TABLE IF NOT EXISTS app.ed_rows (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
	} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { _ = topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'edapp'@'%'") })
	registerClientTLS(t)
	in := start(t, fmt.Sprintf("tls: {cert: %s, key: %s}\nauth: {password_cache_ttl: 1h}\nlog: {level: debug}\n",
		filepath.Join(pki, "server.pem"), filepath.Join(pki, "server-key.pem")))

	login := func(pass, tlsName string, cleartext bool) error {
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "edapp", pass, "tcp", in.listen, "app"
		cfg.Timeout, cfg.TLSConfig, cfg.AllowCleartextPasswords = 5*time.Second, tlsName, cleartext
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.Exec("INSERT INTO ed_rows (v) VALUES (1)"); err != nil {
			return err
		}
		var n int
		return db.QueryRow("SELECT COUNT(*) FROM ed_rows").Scan(&n)
	}
	if err := login(password, "sluice-ca", true); err != nil {
		t.Fatalf("ed25519 over TLS (learns the password): %v", err)
	}
	if err := login(password, "false", false); err != nil {
		t.Fatalf("client_ed25519 without TLS: %v", err)
	}
	if err := login("not-"+password, "false", false); err == nil {
		t.Fatal("a wrong password logged in")
	}

	// /metrics says how many passwords Sluice holds.
	resp, err := http.Get("http://" + in.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "\nsluice_auth_learned_passwords 1\n") {
		t.Error("/metrics does not say sluice_auth_learned_passwords 1")
	}
	// The trail's auth records name the plugins.
	lab.WaitFor(t, "auth records naming the plugins", 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, binary, "audit", "search", "--brokers", in.broker, "--topic", "tls.audit",
			"--where", `type=="auth" && user=="edapp"`).Output()
		if err != nil {
			return false
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var rec struct {
				Plugin string
				OK     bool
			}
			if json.Unmarshal([]byte(line), &rec) == nil {
				seen[fmt.Sprintf("%s %v", rec.Plugin, rec.OK)] = true
			}
		}
		return seen["mysql_clear_password true"] && seen["client_ed25519 true"] && seen["client_ed25519 false"]
	})

	// Nowhere: not in the log, not in any file Sluice wrote.
	if strings.Contains(in.Stderr.String(), password) {
		t.Fatal("the password is in Sluice's log")
	}
	readable := 0 // files where the account's name is found: the search can see
	err = filepath.WalkDir(in.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), password) {
			t.Errorf("the password is in %s", path)
		}
		if strings.Contains(string(b), "edapp") {
			readable++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if readable == 0 {
		t.Fatal("no file holds the account's name in clear: the search above proves nothing")
	}
}
