package proxy

import (
	"slices"
	"strings"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/router"
)

// redactState is the router's side of one genlog section's selective
// redaction: the listed columns and the plans made for them.
type redactState struct {
	src     *audit.Redaction
	cols    *router.RedactColumns
	planner *router.Redactor
}

// redactPlans bounds the redaction plans cached, one per statement shape.
const redactPlans = 10000

// redactionFor returns the state for rd, made anew when the section was
// reloaded (which drops the plans made for the old column list).
func (s *Server) redactionFor(rd *audit.Redaction) *redactState {
	if st := s.redact.Load(); st != nil && st.src == rd {
		return st
	}
	st := &redactState{src: rd, cols: router.NewRedactColumns(rd.Columns), planner: router.NewRedactor(redactPlans)}
	s.redact.Store(st)
	return st
}

// redact withholds, in q's text, original text and parameters, the
// literals and parameters that are values of listed columns or match a
// pattern, before the record is built: the plain values never reach the
// query log's queue, spill file or broker. q.Redacted says which rules
// fired.
func (s *Session) redact(rd *audit.Redaction, q *audit.Query) {
	st := s.srv.redactionFor(rd)
	r := &s.proc.rec
	var values []string
	q.Text, q.Params, values = s.redactText(st, rd, q.Text, q.Params, &q.Redacted, r.stmt.NoBackslashEscapes)
	if q.Original != "" {
		var more []string
		q.Original, _, more = s.redactText(st, rd, q.Original, nil, &q.Redacted, r.stmt.NoBackslashEscapes)
		values = append(values, more...)
	}
	// Server messages quote values ("Duplicate entry '4111...' for key").
	for _, v := range values {
		if len(v) >= 4 {
			q.Error = strings.ReplaceAll(q.Error, v, audit.Redacted)
		}
	}
}

// redactText redacts one statement's text and its parameters, adding the
// rules that fired to fired; it returns the values withheld.
func (s *Session) redactText(st *redactState, rd *audit.Redaction, text string, params []audit.Param, fired *[]string, noEscapes bool) (string, []audit.Param, []string) {
	lx := &s.proc.lexer
	saved := lx.NoBackslashEscapes
	lx.NoBackslashEscapes = noEscapes
	stmt, spans := lx.Literals(text, s.spans)
	lx.NoBackslashEscapes = saved
	s.spans = spans
	if len(spans) == 0 {
		return text, params, nil
	}
	plan := st.planner.Plan(&stmt, text, spans, st.cols, s.proc.state.db)
	fire := func(rule string) {
		if !slices.Contains(*fired, rule) {
			*fired = append(*fired, rule)
		}
	}
	var withheld []string
	redacted := make([]bool, len(spans))
	param := 0
	for i, sp := range spans {
		value := text[sp.Start:sp.End]
		if sp.Marker {
			if param >= len(params) {
				continue
			}
			p := &params[param]
			param++
			if p.Null {
				continue
			}
			value = p.Text
		}
		switch pattern := ""; {
		case plan.Unparsed:
			fire(audit.RedactedUnparsed)
		case plan.Rules[i] != "":
			fire(audit.RedactedColumn + plan.Rules[i])
		default:
			if pattern = rd.Match(value); pattern == "" {
				continue
			}
			fire(audit.RedactedPattern + pattern)
		}
		redacted[i] = true
		withheld = append(withheld, unquote(value))
	}
	if len(withheld) == 0 {
		return text, params, nil
	}
	param = 0
	var out []audit.Param
	for i, sp := range spans {
		if !sp.Marker {
			continue
		}
		if redacted[i] {
			if out == nil {
				out = slices.Clone(params)
			}
			out[param] = audit.Param{Text: audit.Redacted, Quoted: true}
		}
		param++
	}
	if out != nil {
		params = out
	}
	return router.RedactText(text, spans, "'"+audit.Redacted+"'", func(i int) bool { return redacted[i] }), params, withheld
}

// unquote is a literal's value as a server message would quote it.
func unquote(v string) string {
	if len(v) >= 2 && (v[len(v)-1] == '\'' || v[len(v)-1] == '"') {
		v = v[strings.IndexByte(v, v[len(v)-1])+1 : len(v)-1]
	}
	return v
}
