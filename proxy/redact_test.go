package proxy

import (
	"slices"
	"strings"
	"testing"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/router"
)

// TestSessionRedact: the session withholds values in the text, the
// filter's original text, the parameters (a copy: the execute's own are
// untouched) and the server's message, and says which rules fired.
func TestSessionRedact(t *testing.T) {
	g := audit.NewGenlog(audit.Config{Params: true, RedactColumns: []string{"cards.pan"}, RedactPatterns: []string{"email"}}, nil)
	rd := g.Redaction()
	s := &Session{srv: &Server{}}
	s.proc.state.db = "shop"
	var lx router.Lexer
	for _, c := range []struct {
		name     string
		q        audit.Query
		noEsc    bool
		text     string
		params   []string
		original string
		err      string
		fired    []string
	}{
		{name: "text", q: audit.Query{Text: "UPDATE cards SET pan = 'pan-1234', note = 'x@y.org' WHERE id = 1",
			Error: "Duplicate entry 'pan-1234' for key 'pan'"},
			text: "UPDATE cards SET pan = '<redacted>', note = '<redacted>' WHERE id = 1", err: "Duplicate entry '<redacted>' for key 'pan'",
			fired: []string{"column:cards.pan", "pattern:email"}},
		{name: "params", q: audit.Query{Text: "SELECT id FROM cards c WHERE c.pan = ? AND note = ? AND id = ?",
			Params: []audit.Param{{Text: "pan-9"}, {Text: "n", Quoted: true}, {Null: true}}},
			text: "SELECT id FROM cards c WHERE c.pan = ? AND note = ? AND id = ?", params: []string{"<redacted>", "n", ""},
			fired: []string{"column:cards.pan"}},
		{name: "original", q: audit.Query{Text: "SELECT id FROM cards WHERE pan = 'p-2' LIMIT 10", Original: "SELECT id FROM cards WHERE pan = 'p-2'"},
			text: "SELECT id FROM cards WHERE pan = '<redacted>' LIMIT 10", original: "SELECT id FROM cards WHERE pan = '<redacted>'",
			fired: []string{"column:cards.pan"}},
		{name: "no backslash escapes", noEsc: true, q: audit.Query{Text: `SELECT 1 FROM cards WHERE note = 'a\' AND pan = 'p-3'`},
			text: `SELECT 1 FROM cards WHERE note = 'a\' AND pan = '<redacted>'`, fired: []string{"column:cards.pan"}},
		{name: "nothing", q: audit.Query{Text: "SELECT 1 FROM cards WHERE id = 2"}, text: "SELECT 1 FROM cards WHERE id = 2"},
		{name: "unparsed", q: audit.Query{Text: "SELEC 'a', ?", Params: []audit.Param{{Text: "b", Quoted: true}}},
			text: "SELEC '<redacted>', ?", params: []string{"<redacted>"}, fired: []string{"unparsed: all literals"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			lx.NoBackslashEscapes = c.noEsc
			s.proc.rec.stmt = lx.Lex(c.q.Text)
			q := c.q
			own := slices.Clone(q.Params)
			s.redact(rd, &q)
			var params []string
			for _, p := range q.Params {
				params = append(params, p.Text)
			}
			if q.Text != c.text || q.Original != c.original || q.Error != c.err || !slices.Equal(params, c.params) || !slices.Equal(q.Redacted, c.fired) {
				t.Fatalf("got %q %q %q %q %q", q.Text, q.Original, q.Error, params, q.Redacted)
			}
			if !slices.Equal(own, c.q.Params) || strings.Contains(q.Text, "p-") {
				t.Fatal("the execute's parameters changed, or a value is left")
			}
		})
	}
	if s.srv.redactionFor(rd) != s.srv.redactionFor(rd) {
		t.Fatal("a new redaction state per record")
	}
}
