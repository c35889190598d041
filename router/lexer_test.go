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
