package router

import (
	"slices"
	"strings"
	"testing"
)

// The parser panics on some input; Sluice treats it as unparsed.
func TestClassifyParserPanicIsUnparsed(t *testing.T) {
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Classify panicked: %v", r)
		}
	}()
	q := "SELECT " + strings.Repeat("9", 82) + " +"
	var lx Lexer
	st := lx.Lex(q)
	if cl, _ := NewClassifier(10, nil).Classify(&st, q); cl.Route != RoutePrimary || cl.Reason != "unparsed" {
		t.Fatalf("class %+v, want unparsed on the primary", cl)
	}
}

// The fingerprint leaves out ';': a cached single statement must not
// classify a multi-statement query of the same fingerprint.
func TestClassifyCacheKeepsMultiApart(t *testing.T) {
	c := NewClassifier(10, nil)
	var lx Lexer
	for _, q := range []string{"SELECT 0", "SELECT;0"} {
		st := lx.Lex(q)
		cl, hit := c.Classify(&st, q)
		t.Logf("%q: fingerprint %q multi %v -> %v (%s) cache hit %v", q, st.Fingerprint, st.Multi, cl.Route, cl.Reason, hit)
		if st.Multi && cl.Route != RoutePrimary {
			t.Fatalf("multi-statement %q routed to %v", q, cl.Route)
		}
	}
}

// A multi-statement query that does not parse as a whole still has its
// parseable statements classified, in the session's string mode.
func TestClassifyBrokenMultiStatement(t *testing.T) {
	c := NewClassifier(10, nil)
	lx := Lexer{NoBackslashEscapes: true}
	q := `SELECT 'a\'; DROP TABLE victim; SELECT '`
	st := lx.Lex(q)
	if !st.Multi {
		t.Fatalf("%q is a multi-statement query with NO_BACKSLASH_ESCAPES", q)
	}
	cl, _ := c.Classify(&st, q)
	if !slices.Contains(cl.Kinds, "ddl") || !slices.Contains(cl.Tables, "victim") {
		t.Fatalf("kinds %v tables %v: the DROP must be seen", cl.Kinds, cl.Tables)
	}
	// With backslash escapes the same text is one SELECT of a string.
	lx.NoBackslashEscapes = false
	if st := lx.Lex(q); st.Multi {
		t.Fatalf("%q with backslash escapes is one statement", q)
	}
	if got := SplitStatements("SELECT ';' ; /* ; */ DO 1 # ;\n; ", false); len(got) != 2 {
		t.Fatalf("split: %q", got)
	}
}
