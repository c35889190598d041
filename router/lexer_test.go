package router

import (
	"fmt"
	"testing"
)

// A lexer reuses the fingerprints it made: the same shape again costs no
// allocation, and shapes sharing a slot still come back right.
func TestLexerReusesFingerprints(t *testing.T) {
	var l Lexer
	queries := map[string]string{}
	for i := range 40 {
		q := fmt.Sprintf("SELECT c%d FROM t WHERE id = %d", i, i*7)
		queries[q] = fmt.Sprintf("SELECT c%d FROM t WHERE id = ?", i)
	}
	for range 3 { // 40 shapes over 8 slots: collisions replace entries
		for q, want := range queries {
			if got := l.Lex(q).Fingerprint; got != want {
				t.Fatalf("Lex(%q) = %q, want %q", q, got, want)
			}
		}
	}
	q := "SELECT c FROM sbtest1 WHERE id = 4711"
	l.Lex(q)
	if n := testing.AllocsPerRun(100, func() { l.Lex(q) }); n != 0 {
		t.Errorf("lexing a repeated shape: %v allocations, want 0", n)
	}
}

func TestReplaceCall(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT CONNECTION_ID()", "SELECT 42"},
		{"select connection_id ( ), 1", "select 42, 1"},
		{"SELECT CONNECTION_ID(), CONNECTION_ID()", "SELECT 42, 42"},
		{"SELECT 'CONNECTION_ID()', \"connection_id()\", `CONNECTION_ID()`", "SELECT 'CONNECTION_ID()', \"connection_id()\", `CONNECTION_ID()`"},
		{"SELECT 1 /* CONNECTION_ID() */ -- CONNECTION_ID()\n", "SELECT 1 /* CONNECTION_ID() */ -- CONNECTION_ID()\n"},
		{"SELECT MY_CONNECTION_ID(), CONNECTION_IDX(), db.CONNECTION_ID()", "SELECT MY_CONNECTION_ID(), CONNECTION_IDX(), db.CONNECTION_ID()"},
		{"SELECT CONNECTION_ID", "SELECT CONNECTION_ID"},
		{"SELECT * FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()", "SELECT * FROM information_schema.PROCESSLIST WHERE ID = 42"},
		{"SELECT 'it''s', CONNECTION_ID()", "SELECT 'it''s', 42"},
	} {
		if got := ReplaceCall(tc.in, "CONNECTION_ID", "42", false); got != tc.want {
			t.Errorf("ReplaceCall(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
