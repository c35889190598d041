package router

import (
	"strings"
)

// Statement is what one pass over a query's text yields: its fingerprint
// (literals replaced by ?, comments dropped, whitespace collapsed), a digest
// of the fingerprint, its first keyword, routing hints found in comments,
// and whether more than one statement follows. The query log reuses it, so
// it is computed once per statement.
type Statement struct {
	Fingerprint string
	Digest      uint64
	// Keyword is the first keyword, upper-cased ("SELECT", "SET", ...).
	Keyword string
	Hint    Hint
	// Multi is true for a multi-statement query ("SELECT 1; SELECT 2").
	Multi bool
	// NoBackslashEscapes: lexed with backslashes as ordinary characters.
	NoBackslashEscapes bool
}

// Hint is a routing hint from a comment: `/* sluice: route=replica max_lag=2s */`
// or MaxScale's `-- maxscale route to master|slave|server NAME`.
type Hint struct {
	Route  string // "", "primary", "replica" or "server"
	Server string // with Route "server"
	// MaxLag, when set, narrows the replicas this query may read from.
	MaxLag string
}

// Lexer fingerprints statements. Its buffer is reused between calls, so keep
// one per session; it is not safe for concurrent use.
type Lexer struct {
	buf []byte
	// NoBackslashEscapes: the session's sql_mode has NO_BACKSLASH_ESCAPES
	// (the server says so in its status flags), so a backslash in a string
	// is an ordinary character. Getting this wrong would misplace where a
	// string ends, and with it the statement boundaries.
	NoBackslashEscapes bool
	// recent holds fingerprints this lexer made, by digest: a session runs
	// the same few statement shapes again and again, and reusing the string
	// saves an allocation per statement.
	recent [8]string
	// spans, when collecting (Literals), receives each literal and ?
	// marker in order; nil otherwise, which costs Lex one test per literal.
	spans *[]Span
}

// Span is one literal or ? parameter marker of a statement's text:
// text[Start:End].
type Span struct {
	Start, End int
	// Marker: a ? parameter marker, not a literal.
	Marker bool
	// Out is where the literal's ? stands in the fingerprint: literals of
	// one folded list ("?, ?, ?" fingerprinted as "?") share it, so the
	// fingerprint with the Outs of every literal tells statement shapes
	// apart that the fingerprint alone folds together.
	Out int
	// Quoted: a string literal ('...', "...", x'..', b'..', n'..').
	Quoted bool
}

// Literals lexes query like Lex and also returns its literals and ?
// markers, in order, in dst[:0].
func (l *Lexer) Literals(query string, dst []Span) (Statement, []Span) {
	dst = dst[:0]
	l.spans = &dst
	st := l.Lex(query)
	l.spans = nil
	return st, dst
}

const fnvOffset, fnvPrime = 14695981039346656037, 1099511628211

// Lex scans query once.
func (l *Lexer) Lex(query string) Statement {
	st := Statement{NoBackslashEscapes: l.NoBackslashEscapes}
	out := l.buf[:0]
	space := false // a space is pending before the next token
	emit := func(b ...byte) {
		if space && len(out) > 0 {
			out = append(out, ' ')
		}
		space = false
		out = append(out, b...)
	}
	// emitLiteral writes ?, folding lists of literals ("?, ?, ?") into one.
	emitLiteral := func(start, end int, quoted bool) {
		n := len(out)
		if n >= 2 && out[n-1] == ',' && out[n-2] == '?' {
			out = out[:n-1]
			space = false
		} else {
			emit('?')
		}
		if l.spans != nil {
			*l.spans = append(*l.spans, Span{Start: start, End: end, Out: len(out), Quoted: quoted})
		}
	}
	ended := false // a ; was seen; any further token makes it a multi-statement
	i, n := 0, len(query)
	for i < n {
		c := query[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			space = true
			i++
		case c == '#' || (c == '-' && i+2 <= n && strings.HasPrefix(query[i:], "--") && (i+2 == n || isSpace(query[i+2]))):
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				end = n - i
			}
			parseHint(query[i:i+end], &st.Hint)
			i += end
			space = true
		case c == '/' && i+1 < n && query[i+1] == '*':
			end := strings.Index(query[i+2:], "*/")
			if end < 0 {
				end = n - i - 2
			}
			body := query[i+2 : i+2+end]
			if len(body) > 0 && (body[0] == '!' || strings.HasPrefix(body, "M!")) {
				// Executable comment: its content is part of the statement.
				j := strings.IndexByte(body, '!') + 1
				for j < len(body) && body[j] >= '0' && body[j] <= '9' {
					j++
				}
				i += 2 + j
				space = true
				// The content is lexed in place; its closing */ is skipped below.
				continue
			}
			parseHint(body, &st.Hint)
			i += 2 + end + 2
			space = true
		case c == '*' && i+1 < n && query[i+1] == '/':
			i += 2 // end of an executable comment
			space = true
		case c == ';':
			ended = true
			i++
			space = true
		case c == '\'' || c == '"':
			if ended {
				st.Multi = true
			}
			start := i
			i = skipQuoted(query, i, c, l.NoBackslashEscapes)
			emitLiteral(start, i, true)
		case c == '`':
			if ended {
				st.Multi = true
			}
			j := skipQuoted(query, i, '`', true)
			emit([]byte(query[i:j])...)
			i = j
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(query[i+1]) && !prevIdent(out, space)):
			if ended {
				st.Multi = true
			}
			if len(out) > 0 && !space && isIdentByte(out[len(out)-1]) {
				// Part of an identifier such as t1.
				j := i
				for j < n && isIdentByte(query[j]) {
					j++
				}
				out = append(out, query[i:j]...)
				i = j
				continue
			}
			start := i
			i = skipNumber(query, i)
			emitLiteral(start, i, false)
		case (c == 'x' || c == 'X' || c == 'b' || c == 'B' || c == 'n' || c == 'N') && i+1 < n && query[i+1] == '\'' && !prevIdent(out, space):
			if ended {
				st.Multi = true
			}
			start := i
			i = skipQuoted(query, i+1, '\'', l.NoBackslashEscapes)
			emitLiteral(start, i, true)
		case isIdentByte(c):
			if ended {
				st.Multi = true
			}
			j := i
			for j < n && isIdentByte(query[j]) {
				j++
			}
			word := query[i:j]
			if st.Keyword == "" && !(c >= '0' && c <= '9') {
				st.Keyword = upperKeyword(word)
			}
			emit([]byte(word)...)
			i = j
		default:
			if ended {
				st.Multi = true
			}
			if c == '(' || c == ')' || c == ',' {
				// No space before these: "f ( ? )" and "f(?)" group together.
				space = space && c == '('
			}
			emit(c)
			if c == '?' && l.spans != nil {
				*l.spans = append(*l.spans, Span{Start: i, End: i + 1, Marker: true, Out: len(out)})
			}
			i++
			if c == '(' || c == ',' {
				space = c == ','
			}
		}
	}
	l.buf = out
	h := uint64(fnvOffset)
	for _, b := range out {
		h = (h ^ uint64(b)) * fnvPrime
	}
	st.Digest = h
	slot := &l.recent[h%uint64(len(l.recent))]
	if *slot != string(out) { // compared without a copy
		*slot = string(out)
	}
	st.Fingerprint = *slot
	return st
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c == '@' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80
}

// prevIdent reports whether the output ends in an identifier the next byte
// would continue.
func prevIdent(out []byte, space bool) bool {
	return !space && len(out) > 0 && isIdentByte(out[len(out)-1])
}

// skipQuoted returns the index after the quoted string starting at i,
// honouring doubled quotes and, unless noEscapes, backslash escapes.
func skipQuoted(s string, i int, q byte, noEscapes bool) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			if !noEscapes && q != '`' {
				j++
			}
		case q:
			if j+1 < len(s) && s[j+1] == q {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(s)
}

func skipNumber(s string, i int) int {
	if strings.HasPrefix(s[i:], "0x") || strings.HasPrefix(s[i:], "0b") {
		i += 2
	}
	for i < len(s) {
		c := s[i]
		switch {
		case isDigit(c) || c == '.' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'):
			i++
		case (c == '+' || c == '-') && (s[i-1] == 'e' || s[i-1] == 'E'):
			i++
		default:
			return i
		}
	}
	return i
}

// keywords interned, so the common first keywords cost no allocation.
var keywords = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "SET", "SHOW", "BEGIN", "START",
		"COMMIT", "ROLLBACK", "USE", "CREATE", "DROP", "ALTER", "WITH", "CALL", "EXPLAIN", "DESCRIBE", "DESC",
		"PREPARE", "EXECUTE", "DEALLOCATE", "LOCK", "UNLOCK", "XA", "HANDLER", "LOAD", "DO", "SAVEPOINT", "RELEASE",
		"TRUNCATE", "RENAME", "GRANT", "REVOKE", "FLUSH", "KILL", "ANALYZE", "OPTIMIZE", "CHECK", "VALUES", "TABLE"} {
		m[k] = k
	}
	return m
}()

func upperKeyword(w string) string {
	if len(w) > 16 {
		return strings.ToUpper(w)
	}
	var b [16]byte
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		b[i] = c
	}
	if k, ok := keywords[string(b[:len(w)])]; ok {
		return k
	}
	return string(b[:len(w)])
}

// parseHint reads a routing hint from a comment's text, if it holds one.
func parseHint(comment string, h *Hint) {
	c := strings.TrimSpace(strings.TrimLeft(comment, "-#"))
	switch {
	case hasPrefixFold(c, "sluice:"):
		for _, f := range strings.Fields(c[len("sluice:"):]) {
			k, v, _ := strings.Cut(f, "=")
			switch strings.ToLower(k) {
			case "route":
				// Compare case-insensitively in place: lower-casing first would
				// change the length of invalid UTF-8 and misplace the name.
				switch {
				case hasPrefixFold(v, "server:"):
					h.Route, h.Server = "server", v[len("server:"):]
				case strings.EqualFold(v, "primary"), strings.EqualFold(v, "replica"):
					h.Route = strings.ToLower(v)
				}
			case "max_lag":
				h.MaxLag = v
			}
		}
	case hasPrefixFold(c, "maxscale"):
		f := strings.Fields(c)
		if len(f) >= 4 && strings.EqualFold(f[1], "route") && strings.EqualFold(f[2], "to") {
			switch strings.ToLower(f[3]) {
			case "master":
				h.Route = "primary"
			case "slave":
				h.Route = "replica"
			case "server":
				if len(f) >= 5 {
					h.Route, h.Server = "server", f[4]
				}
			}
		}
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// skipText reports whether a string, a quoted name or a comment (not an
// executable /*! one) starts at i, and where it ends.
func skipText(query string, i int, noBackslashEscapes bool) (int, bool) {
	switch c := query[i]; {
	case c == '\'' || c == '"':
		return skipQuoted(query, i, c, noBackslashEscapes), true
	case c == '`':
		return skipQuoted(query, i, '`', true), true
	case c == '#' || (c == '-' && strings.HasPrefix(query[i:], "--") && (i+2 == len(query) || isSpace(query[i+2]))):
		if end := strings.IndexByte(query[i:], '\n'); end >= 0 {
			return i + end + 1, true
		}
		return len(query), true
	case c == '/' && strings.HasPrefix(query[i:], "/*") && !strings.HasPrefix(query[i:], "/*!") && !strings.HasPrefix(query[i:], "/*M!"):
		if end := strings.Index(query[i+2:], "*/"); end >= 0 {
			return i + end + 4, true
		}
		return len(query), true
	}
	return i, false
}

// SplitStatements cuts a multi-statement query at its top-level semicolons,
// with the lexer's rules for strings and comments, so each statement can be
// classified on its own when the query as a whole does not parse.
func SplitStatements(query string, noBackslashEscapes bool) []string {
	var out []string
	start := 0
	cut := func(end int) {
		if s := strings.TrimSpace(query[start:end]); s != "" {
			out = append(out, s)
		}
	}
	for i := 0; i < len(query); {
		if next, ok := skipText(query, i, noBackslashEscapes); ok {
			i = next
			continue
		}
		switch c := query[i]; {
		case c == ';':
			cut(i)
			start = i + 1
			i++
		default:
			i++
		}
	}
	cut(len(query))
	return out
}

// ReplaceCall replaces every call of the argument-less function fn (upper
// case, e.g. "CONNECTION_ID") in query with value, outside strings, quoted
// names and comments; it returns query itself when there is none.
func ReplaceCall(query, fn, value string, noBackslashEscapes bool) string {
	var b strings.Builder
	done := 0
	for i := 0; i < len(query); {
		if next, ok := skipText(query, i, noBackslashEscapes); ok {
			i = next
			continue
		}
		switch c := query[i]; {
		case isIdentByte(c):
			j := i
			for j < len(query) && isIdentByte(query[j]) {
				j++
			}
			if end, ok := emptyCall(query, j); ok && strings.EqualFold(query[i:j], fn) && (i == 0 || query[i-1] != '.' && query[i-1] != '@') {
				b.WriteString(query[done:i])
				b.WriteString(value)
				done, j = end, end
			}
			i = j
		default:
			i++
		}
	}
	if done == 0 {
		return query
	}
	b.WriteString(query[done:])
	return b.String()
}

// emptyCall reports whether "( )" follows at i, and where it ends.
func emptyCall(s string, i int) (int, bool) {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i >= len(s) || s[i] != '(' {
		return 0, false
	}
	i++
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i >= len(s) || s[i] != ')' {
		return 0, false
	}
	return i + 1, true
}
