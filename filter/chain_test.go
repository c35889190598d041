package filter

import (
	"errors"
	"testing"

	"github.com/sluice-proxy/sluice/router"
)

func TestNewChainNamesTheBadKey(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		key  string
	}{
		{Spec{}, "type"},
		{Spec{Type: "lua"}, "type"},
		{Spec{Type: "regex"}, "match"},
		{Spec{Type: "regex", Match: "(unclosed"}, "match"},
		{Spec{Type: "firewall"}, "rules"},
		{Spec{Type: "firewall", Mode: "greylist", Rules: []FirewallRule{{Kind: "ddl"}}}, "mode"},
		{Spec{Type: "firewall", Action: "shout", Rules: []FirewallRule{{Kind: "ddl"}}}, "action"},
		{Spec{Type: "firewall", Rules: []FirewallRule{{Kind: "dml"}}}, "rules[0].kind"},
		{Spec{Type: "firewall", Rules: []FirewallRule{{}}}, "rules[0]"},
	} {
		_, err := NewChain([]Spec{{Type: "regex", Match: "x"}, tc.spec})
		var se *SpecError
		if !errors.As(err, &se) || se.Index != 1 || se.Key != tc.key {
			t.Errorf("%+v: error %v, want filters[1].%s", tc.spec, err, tc.key)
		}
	}
}

// analyse stands in for the proxy's lexer and classifier.
func analyse(st *Statement) {
	var lx router.Lexer
	s := lx.Lex(st.Text)
	st.Fingerprint, st.Digest = s.Fingerprint, s.Digest
}

func TestFirewallRules(t *testing.T) {
	chain, err := NewChain([]Spec{
		{Type: "regex", Match: `FROM old_name`, Replace: "FROM new_name"},
		{Type: "firewall", Name: "fw", Rules: []FirewallRule{
			{Fingerprint: "delete from t where id=1"},
			{Table: "Secrets", Kind: "select"},
			{Kind: "ddl"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		text   string
		kinds  []router.Kind
		tables []string
		deny   bool
	}{
		{"DELETE FROM t WHERE id = 42", []router.Kind{"delete"}, []string{"t"}, true},
		{"DELETE FROM t WHERE id = 1 OR id = 2", []router.Kind{"delete"}, []string{"t"}, false},
		{"SELECT * FROM secrets", []router.Kind{"select"}, []string{"secrets"}, true},
		{"UPDATE secrets SET x = 1", []router.Kind{"update"}, []string{"secrets"}, false},
		{"SELECT 1; DROP TABLE x", []router.Kind{"select", "ddl"}, []string{"x"}, true},
		{"SELECT * FROM old_name", []router.Kind{"select"}, []string{"old_name"}, false},
	} {
		st := &Statement{Text: tc.text, Kinds: tc.kinds, Tables: tc.tables}
		analyse(st)
		_, d := chain.Before(st, analyse)
		if (d != nil) != tc.deny {
			t.Errorf("%q: refused %v, want %v", tc.text, d, tc.deny)
		}
	}
	st := &Statement{Text: "SELECT * FROM old_name", Kinds: []router.Kind{router.KindSelect}}
	analyse(st)
	if rewritten, _ := chain.Before(st, analyse); !rewritten || st.Text != "SELECT * FROM new_name" || st.Fingerprint != "SELECT * FROM new_name" {
		t.Errorf("rewrite: %v %+v", rewritten, st)
	}
}

func TestFirewallAllowlistAndDetect(t *testing.T) {
	chain, err := NewChain([]Spec{
		{Type: "firewall", Name: "ro", Mode: "allowlist", Users: []string{"report"}, Rules: []FirewallRule{{Kind: "select"}}},
		{Type: "firewall", Name: "watch", Action: "detect", Rules: []FirewallRule{{Table: "audit"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(user string, kinds []router.Kind, tables []string, wantDeny, wantDetect bool) {
		t.Helper()
		st := &Statement{User: user, Text: "x", Kinds: kinds, Tables: tables}
		_, d := chain.Before(st, analyse)
		deny, detect := d != nil && !d.DetectOnly, d != nil && d.DetectOnly
		if deny != wantDeny || detect != wantDetect {
			t.Errorf("%s %v %v: %+v, want deny %v detect %v", user, kinds, tables, d, wantDeny, wantDetect)
		}
	}
	check("report", []router.Kind{"select"}, nil, false, false)
	check("report", []router.Kind{"insert"}, nil, true, false)
	check("report", []router.Kind{"select", "select"}, nil, true, false) // multi needs kind multi
	check("app", []router.Kind{"insert"}, nil, false, false)
	check("app", []router.Kind{"select"}, []string{"audit"}, false, true)
}

func TestShape(t *testing.T) {
	if a, b := shape("delete from t where id=?"), shape("DELETE  FROM t WHERE id = ?"); a != b {
		t.Errorf("%q != %q", a, b)
	}
	if shape("SELECT a b FROM t") == shape("SELECT ab FROM t") {
		t.Error("an alias and a longer name have the same shape")
	}
	if got := shape("SELECT * FROM t WHERE x>=?"); got != "select * from t where x > = ?" {
		t.Errorf("shape: %q", got)
	}
}
