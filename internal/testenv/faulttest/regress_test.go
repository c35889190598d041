package faulttest

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestUnparsableStatementIsNotFatal: one statement with an 82-digit number
// that the classifier's parser reads from the text.
func TestUnparsableStatementIsNotFatal(t *testing.T) {
	s := startSluice(t, options{})
	db := s.db("app", "apppass", "app")
	other := s.db("app", "apppass", "app")
	var one int
	if err := other.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	// The parser panicked on this once and took the process down.
	if _, err := db.Exec("SELECT " + strings.Repeat("9", 82) + " +"); err == nil {
		t.Fatal("a statement that does not parse on the server succeeded")
	}
	if err := other.QueryRow("SELECT 1").Scan(&one); err != nil || !s.Alive() {
		t.Fatalf("other session after the statement: %v\n%s", err, s.Stderr.Tail(3000))
	}
}

// multiStatementDB is one connection through s that may send
// multi-statement queries.
func multiStatementDB(t *testing.T, s *sluice) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(s.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MultiStatements = true
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestSecretsInWrappedStatements: password statements inside a
// multi-statement query or EXECUTE IMMEDIATE, and a server error message
// that quotes the statement.
func TestSecretsInWrappedStatements(t *testing.T) {
	s := startSluice(t, options{bundledBroker: true, genlog: "  topic: fault.wrapped\n"})
	ctx := context.Background()
	t.Cleanup(func() { topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'wrap_user'@'%'") })
	topo.Primary.Exec(ctx, "CREATE OR REPLACE USER 'wrap_user'@'%'")
	db := s.db("app", "apppass", "app")
	multi := multiStatementDB(t, s)
	stmts := map[string]string{
		"S3cr3t-multi-1":  "DO 1; SET PASSWORD FOR 'wrap_user'@'%' = PASSWORD('S3cr3t-multi-1')",
		"S3cr3t-exec-2":   `EXECUTE IMMEDIATE 'ALTER USER ''wrap_user''@''%'' IDENTIFIED BY ''S3cr3t-exec-2'''`,
		"S3cr3t-syntax-3": "CREATE USER 'wrap_user2'@'%' IDENTIFIED BY BY 'S3cr3t-syntax-3'",
	}
	for _, q := range stmts {
		via := db
		if strings.HasPrefix(q, "DO 1;") {
			via = multi
		}
		_, err := via.ExecContext(ctx, q)
		t.Logf("%s: %v", q, err)
	}
	// Both sessions end, so their quit records mark the end of the trail.
	db.Close()
	multi.Close()
	recs := consume(t, s.broker, "fault.wrapped", 30*time.Second, func(rs []auditRecord) bool {
		n := 0
		for _, r := range rs {
			if r.Type == "quit" {
				n++
			}
		}
		return n >= 2
	})
	for _, r := range recs {
		for sec := range stmts {
			if strings.Contains(r.raw, sec) {
				t.Errorf("secret %s in %s", sec, r.raw)
			}
		}
	}
}

// firewalledSluice runs Sluice with a firewall denying DDL, and creates
// table in app for a test to try to drop.
func firewalledSluice(t *testing.T, table string) *sluice {
	t.Helper()
	if err := topo.Primary.Exec(context.Background(), "CREATE TABLE IF NOT EXISTS app."+table+" (a INT)"); err != nil {
		t.Fatal(err)
	}
	return startSluice(t, options{extra: "filters:\n  - type: firewall\n    name: no-ddl\n    rules:\n      - kind: ddl\n"})
}

// requireTable fails the test when a DROP got past the firewall.
func requireTable(t *testing.T, table string) {
	t.Helper()
	rdb, err := topo.Primary.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := rdb.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'app' AND table_name = ?", table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the firewall's ddl denylist let DROP TABLE through")
	}
}

// TestFirewallNotBypassedThroughClassifierCache: a denylist of kind ddl; a
// bogus single statement primes the classifier cache with the fingerprint
// of a multi-statement query that hides a DROP TABLE.
func TestFirewallNotBypassedThroughClassifierCache(t *testing.T) {
	db := multiStatementDB(t, firewalledSluice(t, "fwvictim"))
	_, err := db.Exec("SELECT 2 DROP TABLE fwvictim")
	t.Logf("priming single statement: %v", err)
	_, err = db.Exec("SELECT 3; DROP TABLE fwvictim")
	t.Logf("primed multi-statement: %v", err)
	requireTable(t, "fwvictim")
}

// TestFirewallFollowsNoBackslashEscapes: with sql_mode
// NO_BACKSLASH_ESCAPES the server ends a string at \' where Sluice's lexer
// does not, so a multi-statement query looks like one SELECT.
func TestFirewallFollowsNoBackslashEscapes(t *testing.T) {
	db := multiStatementDB(t, firewalledSluice(t, "fwvictim2"))
	_, err := db.Exec("DROP TABLE fwvictim2")
	t.Logf("plain DROP: %v", err)
	_, err = db.Exec("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
	t.Logf("set sql_mode: %v", err)
	_, err = db.Exec(`/* sluice: route=primary */ SELECT 'a\'; DROP TABLE fwvictim2; SELECT '`)
	t.Logf("hidden DROP: %v", err)
	requireTable(t, "fwvictim2")
}
