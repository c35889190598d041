package faulttest

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// secretStatements run through Sluice as sec_admin; each holds one secret.
var secretStatements = []struct{ secret, query string }{
	{"S3cr3t-create-8812", "CREATE USER 'sec_user'@'%' IDENTIFIED BY 'S3cr3t-create-8812'"},
	{"S3cr3t-alter-8813", "ALTER USER 'sec_user'@'%' IDENTIFIED BY 'S3cr3t-alter-8813'"},
	{"S3cr3t-setpw-8814", "SET PASSWORD FOR 'sec_user'@'%' = PASSWORD('S3cr3t-setpw-8814')"},
	{"S3cr3t-grant-8815", "GRANT SELECT ON app.* TO 'sec_user'@'%' IDENTIFIED BY 'S3cr3t-grant-8815'"},
	{"S3cr3t-comment-8816", "/* rotate */ ALTER USER 'sec_user'@'%' IDENTIFIED BY 'S3cr3t-comment-8816'"},
	{"S3cr3t-final-8817", "set password for 'sec_user'@'%' = password('S3cr3t-final-8817')"},
}

// TestSecretsNeverLogged runs Sluice at log level debug with Genlog (query
// parameters included) and every password-bearing statement of the README,
// logs in with the new account, fails logins with wrong and clear-text
// passwords, then looks for every secret, and for the service user's and
// the clients' passwords, in Sluice's stderr, in every record of the audit
// topic, in the broker's files on disk, and in the admin API's sessions,
// digests and config.
func TestSecretsNeverLogged(t *testing.T) {
	s := startSluice(t, options{bundledBroker: true, logLevel: "debug",
		genlog: "  topic: fault.secrets\n  params: true\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'sec_user'@'%', 'sec_admin'@'%'")
	})
	// An account that may run GRANT ... IDENTIFIED BY (app lacks GRANT OPTION).
	const admin, adminPass = "sec_admin", "S3cr3t-admin-8811"
	for _, q := range []string{
		"DROP USER IF EXISTS 'sec_user'@'%'",
		"CREATE OR REPLACE USER '" + admin + "'@'%' IDENTIFIED BY '" + adminPass + "'",
		"GRANT ALL ON *.* TO '" + admin + "'@'%' WITH GRANT OPTION",
		"REVOKE READ_ONLY ADMIN ON *.* FROM '" + admin + "'@'%'",
	} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	waitCaughtUp(t)

	db := s.db(admin, adminPass, "app")
	db.SetMaxOpenConns(1)
	// A new account: Sluice loads it at its first login (a reload at most
	// once per users_refresh_interval).
	var conn *sql.Conn
	lab.WaitFor(t, "sec_admin's login", 20*time.Second, func() bool {
		c, err := db.Conn(ctx)
		if err == nil {
			conn = c
		}
		return err == nil
	})
	for _, st := range secretStatements {
		if _, err := conn.ExecContext(ctx, st.query); err != nil {
			t.Fatalf("%s: %v", st.query, err)
		}
	}
	secrets := []string{lab.AppPassword, lab.MonitorPassword, adminPass}
	for _, st := range secretStatements {
		secrets = append(secrets, st.secret)
	}
	// The same through the binary protocol: COM_STMT_PREPARE carries the
	// text, COM_STMT_EXECUTE is what Genlog records. (MariaDB takes no
	// placeholder for a password, so the secret is in the text.)
	const prepSecret = "S3cr3t-prepared-8818"
	if stmt, err := conn.PrepareContext(ctx, "ALTER USER 'sec_user'@'%' IDENTIFIED BY '"+prepSecret+"'"); err != nil {
		t.Logf("prepared ALTER USER refused by the server (%v); its text was still sent to Sluice", err)
	} else {
		if _, err := stmt.ExecContext(ctx); err != nil {
			t.Fatalf("prepared ALTER USER: %v", err)
		}
		stmt.Close()
	}
	secrets = append(secrets, prepSecret)
	if _, err := conn.ExecContext(ctx, "SET PASSWORD FOR 'sec_user'@'%' = PASSWORD('S3cr3t-final-8817')"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	db.Close()
	waitCaughtUp(t)

	// The new account logs in through Sluice (the password goes as a
	// scramble reply only); a wrong password is refused.
	newUser := s.db("sec_user", "S3cr3t-final-8817", "app")
	lab.WaitFor(t, "sec_user's login", 20*time.Second, func() bool { return newUser.PingContext(ctx) == nil })
	newUser.Close()
	const wrong = "S3cr3t-wrong-8819"
	bad, _ := sql.Open("mysql", s.dsn("sec_user", wrong, "app"))
	if err := bad.PingContext(ctx); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	bad.Close()
	secrets = append(secrets, wrong)
	// A client that sends its password in clear (claiming
	// mysql_clear_password) is asked to switch; the clear text must not be
	// logged either.
	const clear = "S3cr3t-clear-8820"
	loginOutcome(t, s.listen, func([]byte) []byte {
		return handshakeResponse(rawCaps, "sec_user", []byte(clear), "app", "mysql_clear_password")
	}, func([]byte) []byte { return []byte(clear + "\x00") })
	secrets = append(secrets, clear)

	// Every record of the session (its quit closes it) and of the failed
	// logins must be in the topic before looking.
	recs := consume(t, s.broker, "fault.secrets", 60*time.Second, func(rs []auditRecord) bool {
		quits, failed := 0, 0
		for _, r := range rs {
			switch {
			case r.Type == "quit":
				quits++
			case r.Type == "auth" && strings.Contains(r.raw, `"ok":false`):
				failed++
			}
		}
		return quits >= 2 && failed >= 2
	})
	sawQuery := map[string]bool{}
	for _, r := range recs {
		for _, sec := range secrets {
			if strings.Contains(r.raw, sec) {
				t.Errorf("secret %q in the audit record %s", sec, r.raw)
			}
		}
		if r.Type == "query" {
			sawQuery[r.Query] = true
		}
	}
	// The statements were recorded (by fingerprint).
	if !sawQuery["CREATE USER ?@? IDENTIFIED BY ?"] || !sawQuery["SET PASSWORD FOR ?@? = PASSWORD(?)"] {
		t.Errorf("password statements missing from the audit trail; recorded queries: %v", keys(sawQuery))
	}

	// Sluice's own log, at debug level.
	logs := s.Stderr.String()
	if !strings.Contains(logs, "level=DEBUG") {
		t.Fatalf("no debug output from Sluice; the check would prove nothing:\n%s", s.Stderr.Tail(2048))
	}
	for _, sec := range secrets {
		if strings.Contains(logs, sec) {
			t.Errorf("secret %q in Sluice's log", sec)
		}
	}
	// The admin API: sessions, digests, the running config.
	for _, path := range []string{"/v1/sessions", "/v1/digests?limit=1000", "/v1/config"} {
		body := adminGet(t, s, path)
		for _, sec := range secrets {
			if strings.Contains(body, sec) {
				t.Errorf("secret %q in GET %s: %.500s", sec, path, body)
			}
		}
	}
	// The broker's files and the spill file.
	sluiceFiles(s, func(path string, b []byte) {
		for _, sec := range secrets {
			if strings.Contains(string(b), sec) {
				t.Errorf("secret %q on disk in %s", sec, path)
			}
		}
	})
}

// sluiceFiles calls f with every file Sluice wrote under its directory
// (the broker's, the spill file), its config aside.
func sluiceFiles(s *sluice, f func(path string, b []byte)) {
	filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "sluice.yaml") {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil {
			f(path, b)
		}
		return nil
	})
}

func adminGet(t *testing.T, s *sluice, path string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + s.admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		t.Logf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprintf("%.80s", k))
	}
	return out
}
