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
	if err := other.QueryRow("SELECT 1").Scan(&one); err != nil || !s.alive() {
		t.Fatalf("other session after the statement: %v\n%s", err, tail(s.stderr.String(), 3000))
	}
}

// TestSecretsInWrappedStatements: password statements inside a
// multi-statement query or EXECUTE IMMEDIATE, and a server error message
// that quotes the statement.
func TestSecretsInWrappedStatements(t *testing.T) {
	s := startSluice(t, options{bundledBroker: true, genlog: "  topic: fault.wrapped\n"})
	ctx := context.Background()
	t.Cleanup(func() { topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'wrap_user'@'%'") })
	topo.Primary.Exec(ctx, "CREATE OR REPLACE USER 'wrap_user'@'%'")
	cfg, _ := mysql.ParseDSN(s.dsn("app", "apppass", "app"))
	cfg.MultiStatements = true
	db := s.db("app", "apppass", "app")
	mdb := s.db("app", "apppass", "app")
	mdb.Close()
	stmts := map[string]string{
		"S3cr3t-multi-1":  "DO 1; SET PASSWORD FOR 'wrap_user'@'%' = PASSWORD('S3cr3t-multi-1')",
		"S3cr3t-exec-2":   `EXECUTE IMMEDIATE 'ALTER USER ''wrap_user''@''%'' IDENTIFIED BY ''S3cr3t-exec-2'''`,
		"S3cr3t-syntax-3": "CREATE USER 'wrap_user2'@'%' IDENTIFIED BY BY 'S3cr3t-syntax-3'",
	}
	mconn, err := sqlOpenConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer mconn.Close()
	for sec, q := range stmts {
		var err error
		if strings.HasPrefix(q, "DO 1;") {
			_, err = mconn.ExecContext(ctx, q)
		} else {
			_, err = db.ExecContext(ctx, q)
		}
		t.Logf("%s: %v", q, err)
		_ = sec
	}
	db.Close()
	mconn.Close()
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

func sqlOpenConnector(cfg *mysql.Config) (*sqlDB, error) {
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sqlOpenDB(c), nil
}

type sqlDB = sql.DB

var sqlOpenDB = sql.OpenDB

// TestFirewallNotBypassedThroughClassifierCache: a denylist of kind ddl; a
// bogus single statement primes the classifier cache with the fingerprint
// of a multi-statement query that hides a DROP TABLE.
func TestFirewallNotBypassedThroughClassifierCache(t *testing.T) {
	ctx := context.Background()
	if err := topo.Primary.Exec(ctx, "CREATE TABLE IF NOT EXISTS app.fwvictim (a INT)"); err != nil {
		t.Fatal(err)
	}
	s := startSluice(t, options{extra: "filters:\n  - type: firewall\n    name: no-ddl\n    rules:\n      - kind: ddl\n"})
	cfg, _ := mysql.ParseDSN(s.dsn("app", "apppass", "app"))
	cfg.MultiStatements = true
	db, err := sqlOpenConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	_, err = db.Exec("SELECT 2 DROP TABLE fwvictim")
	t.Logf("priming single statement: %v", err)
	_, err = db.Exec("SELECT 3; DROP TABLE fwvictim")
	t.Logf("primed multi-statement: %v", err)
	var n int
	topo.Primary.Exec(ctx, "SELECT 1")
	rdb, _ := topo.Primary.RootDB()
	rdb.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='app' AND table_name='fwvictim'").Scan(&n)
	if n == 0 {
		t.Fatal("the firewall's ddl denylist let DROP TABLE through")
	}
}

// TestFirewallFollowsNoBackslashEscapes: with sql_mode
// NO_BACKSLASH_ESCAPES the server ends a string at \' where Sluice's lexer
// does not, so a multi-statement query looks like one SELECT.
func TestFirewallFollowsNoBackslashEscapes(t *testing.T) {
	ctx := context.Background()
	if err := topo.Primary.Exec(ctx, "CREATE TABLE IF NOT EXISTS app.fwvictim2 (a INT)"); err != nil {
		t.Fatal(err)
	}
	s := startSluice(t, options{extra: "filters:\n  - type: firewall\n    name: no-ddl\n    rules:\n      - kind: ddl\n"})
	cfg, _ := mysql.ParseDSN(s.dsn("app", "apppass", "app"))
	cfg.MultiStatements = true
	db, err := sqlOpenConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	_, err = db.Exec("DROP TABLE fwvictim2")
	t.Logf("plain DROP: %v", err)
	_, err = db.Exec("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
	t.Logf("set sql_mode: %v", err)
	_, err = db.Exec(`/* sluice: route=primary */ SELECT 'a\'; DROP TABLE fwvictim2; SELECT '`)
	t.Logf("hidden DROP: %v", err)
	var n int
	rdb, _ := topo.Primary.RootDB()
	rdb.QueryRow("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='app' AND table_name='fwvictim2'").Scan(&n)
	if n == 0 {
		t.Fatal("the firewall's ddl denylist let DROP TABLE through")
	}
}
