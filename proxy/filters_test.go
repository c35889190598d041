package proxy_test

import (
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/filter"
	"github.com/sluice-proxy/sluice/proxy"
	"github.com/sluice-proxy/sluice/router"
)

// recordSink keeps the query log's records in memory.
type recordSink struct {
	mu   sync.Mutex
	recs []string
}

func (r *recordSink) Send(rec audit.Record) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, string(rec.Value))
	return true
}

// find returns the first query record whose query field contains substr,
// waiting up to 5s for it: a session writes a statement's record just
// after the client has its answer.
func (r *recordSink) find(substr string) (gjson.Result, bool) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if g, ok := r.lookup(substr); ok || time.Now().After(deadline) {
			return g, ok
		}
	}
}

func (r *recordSink) lookup(substr string) (gjson.Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		g := gjson.Parse(rec)
		if g.Get("type").String() == "query" && strings.Contains(g.Get("query").String(), substr) {
			return g, true
		}
	}
	return gjson.Result{}, false
}

func setFilters(t *testing.T, s *sluice, specs []filter.Spec) {
	t.Helper()
	chain, err := filter.NewChain(specs)
	if err != nil {
		t.Fatal(err)
	}
	s.srv.SetFilters(chain)
}

func TestFilters(t *testing.T) {
	for _, rt := range []string{"readwritesplit", "readconnroute"} {
		t.Run(rt, func(t *testing.T) {
			s := startRouted(t, router.Config{Type: rt, Target: "primary", MaxReplicationLag: 10 * time.Second}, proxy.Config{})
			sink := &recordSink{}
			s.srv.SetGenlog(audit.NewGenlog(audit.Config{Topic: "t", Proxy: "test"}, sink))
			setFilters(t, s, []filter.Spec{
				{Type: "regex", Match: `(?i)select\s+'old'`, Replace: "SELECT 'new'"},
				{Type: "regex", Match: `'secret'`, Replace: "'hidden'", Users: []string{"nobody"}},
				{Type: "firewall", Name: "no-ddl", Rules: []filter.FirewallRule{{Kind: "ddl", Table: "guarded"}}},
				{Type: "firewall", Name: "no-bulk-delete", Rules: []filter.FirewallRule{{Fingerprint: "DELETE FROM filtered WHERE n > 1"}}},
				{Type: "firewall", Name: "watch", Action: "detect", Rules: []filter.FirewallRule{{Table: "watched"}}},
			})
			db := s.open(t, "app", "apppass", "app")
			db.SetMaxOpenConns(1)
			mustExec(t, db, "DROP TABLE IF EXISTS filtered")
			mustExec(t, db, "CREATE TABLE filtered (id INT PRIMARY KEY, n INT)")
			mustExec(t, db, "INSERT INTO filtered VALUES (1, 1), (2, 2), (3, 3)")

			// regex rewrites the statement the server runs.
			var got string
			if err := db.QueryRow("select   'old'").Scan(&got); err != nil || got != "new" {
				t.Fatalf("regex rewrite: got %q, %v; want new", got, err)
			}
			rec, ok := sink.find("SELECT 'new'")
			if !ok || rec.Get("original_query").String() != "select   'old'" {
				t.Fatalf("query log of a rewritten statement: %s", rec.Raw)
			}
			// A regex scoped to another user leaves this one alone.
			if err := db.QueryRow("SELECT 'secret'").Scan(&got); err != nil || got != "secret" {
				t.Fatalf("scoped regex: got %q, %v", got, err)
			}

			// firewall by kind and table: DDL on guarded is refused, DDL elsewhere runs.
			_, err := db.Exec("CREATE TABLE guarded (id INT)")
			if sqlErrCode(err) != 1142 || !strings.Contains(err.Error(), `"no-ddl"`) {
				t.Fatalf("DDL on a guarded table: %v, want error 1142 naming the filter", err)
			}
			mustExec(t, db, "DROP TABLE IF EXISTS unguarded")
			// by fingerprint: literals do not matter, another shape passes.
			_, err = db.Exec("DELETE FROM filtered WHERE n > 2")
			if sqlErrCode(err) != 1142 {
				t.Fatalf("delete matching the denied fingerprint: %v, want 1142", err)
			}
			mustExec(t, db, "DELETE FROM filtered WHERE id = 3")
			var n int
			if err := db.QueryRow("SELECT /* sluice: route=primary */ COUNT(*) FROM filtered").Scan(&n); err != nil || n != 2 {
				t.Fatalf("rows left: %d, %v; want 2 (one refused delete, one allowed)", n, err)
			}
			// The session goes on after a refusal, and the trail shows it.
			rec, ok = sink.find("CREATE TABLE guarded")
			if !ok || rec.Get("error_code").Int() != 1142 || !strings.HasPrefix(rec.Get("route").String(), "refused") {
				t.Fatalf("query log of a refused statement: %s", rec.Raw)
			}
			// A prepared statement is filtered when prepared.
			if _, err := db.Prepare("CREATE TABLE guarded (id INT, x INT)"); sqlErrCode(err) != 1142 {
				t.Fatalf("prepare of a refused statement: %v, want 1142", err)
			}
			// detect mode lets the statement run and marks it in the trail.
			if _, err := db.Exec("SELECT * FROM watched"); sqlErrCode(err) != 1146 {
				t.Fatalf("detect-only filter: %v, want the server's own 1146", err)
			}
			rec, ok = sink.find("FROM watched")
			if !ok || !strings.HasPrefix(rec.Get("filter_detected").String(), "watch:") {
				t.Fatalf("query log of a detected statement: %s", rec.Raw)
			}
		})
	}
}

// A multi-statement query cannot slip a denied statement past the firewall,
// and an allowlist refuses what it does not list.
func TestFirewallMultiStatementAndAllowlist(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second}, proxy.Config{})
	setFilters(t, s, []filter.Spec{
		{Type: "firewall", Name: "no-drop", Rules: []filter.FirewallRule{{Kind: "ddl"}}},
		{Type: "firewall", Name: "nopass-reads", Mode: "allowlist", Users: []string{"nopass"},
			Rules: []filter.FirewallRule{{Kind: "select"}, {Kind: "set"}, {Kind: "show"}}},
	})
	multi, err := sql.Open("mysql", s.dsn("app", "apppass", "app", map[string]string{"multiStatements": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	defer multi.Close()
	if _, err := multi.Exec("CREATE TABLE IF NOT EXISTS multi_guard (id INT)"); sqlErrCode(err) != 1142 {
		t.Fatalf("DDL: %v, want 1142", err)
	}
	if _, err := multi.Exec("SELECT 1; CREATE TABLE multi_guard (id INT)"); sqlErrCode(err) != 1142 {
		t.Fatalf("DDL hidden in a multi-statement: %v, want 1142", err)
	}

	ro, err := sql.Open("mysql", s.dsn("nopass", "", "app", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var one int
	if err := ro.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatalf("allowed read: %v", err)
	}
	if _, err := ro.Exec("DO 1"); sqlErrCode(err) != 1142 {
		t.Fatalf("statement outside the allowlist: %v, want 1142", err)
	}
}

// all returns every record so far.
func (r *recordSink) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.recs...)
}
