package router

import (
	"strings"
	"testing"

	"github.com/pingcap/tidb/pkg/parser"
)

// fuzzSeeds are statements of every shape the lexer and classifier handle,
// plus the corners: comments of each kind, executable comments, quotes and
// escapes, numbers, hints, multi-statements, unterminated input.
var fuzzSeeds = []string{
	"SELECT * FROM t WHERE id = 5",
	"  select  c from   t1 where id in (1, 2, 3)  ",
	"INSERT INTO t VALUES ('a''b', \"c\\\"d\", 1.5e3, 0xFF, x'0a', b'01', N'n', _utf8mb4'u')",
	"/* sluice: route=replica max_lag=2s */ SELECT 1",
	"SELECT 1 /* sluice: route=server:db2 */",
	"SELECT 1 -- maxscale route to server db3",
	"SELECT 1 -- trailing\n",
	"SELECT 1 # hash comment\nFROM dual",
	"SELECT `a b` FROM `t-1` WHERE `x``y` = 1",
	"/*!40101 SET NAMES utf8 */",
	"/*M!100100 SELECT 1 */",
	"SELECT -1, +2, .5, 1e-3, 0b101, t1.c2",
	"SELECT 1; SELECT 2",
	"SELECT ';'",
	"SELECT * FROM t WHERE id = 5 FOR UPDATE",
	"SELECT * FROM t LOCK IN SHARE MODE",
	"SELECT LAST_INSERT_ID()",
	"SELECT @@identity, @@session.sql_mode",
	"SELECT a FROM t INTO OUTFILE '/tmp/x'",
	"SELECT id INTO @myid FROM t LIMIT 1",
	"SELECT (@x := 5)",
	"SELECT 1 UNION SELECT 2",
	"WITH c AS (SELECT 1) SELECT * FROM c",
	"UPDATE t SET a = 1 WHERE b = 'x'",
	"DELETE FROM t WHERE a IN (SELECT b FROM u)",
	"REPLACE INTO t VALUES (1)",
	"CREATE TEMPORARY TABLE tmp1 (a INT)",
	"DROP TABLE tmp1, t2",
	"SHOW WARNINGS",
	"SHOW MASTER STATUS",
	"DESCRIBE t",
	"EXPLAIN SELECT * FROM t",
	"SET NAMES utf8mb4",
	"SET @a = 1, SESSION sql_mode = 'ANSI', autocommit = 0",
	"SET GLOBAL max_connections = 10",
	"USE app",
	"BEGIN",
	"START TRANSACTION READ ONLY",
	"CALL p(1, 'a')",
	"LOCK TABLES t READ",
	"XA START 'x'",
	"HANDLER t OPEN",
	"PREPARE s FROM 'SELECT 1'",
	"CREATE USER 'u'@'%' IDENTIFIED BY 'S3cret'",
	"SET PASSWORD FOR 'u'@'%' = PASSWORD('S3cret')",
	"GRANT ALL ON *.* TO 'u'@'%' IDENTIFIED BY 'S3cret'",
	"this is not sql",
	"SELECT 'unterminated",
	"SELECT /* unterminated",
	"SELECT `unterminated",
	"*/ SELECT 1",
	"/*M!;0*/", // the parser saw no statement where the lexer saw two (FuzzClassify)
	"",
	";",
	"\x00\xff\xfe",
}

// FuzzLex runs the lexer on arbitrary text. It must not panic, and:
//   - Digest is FNV-1a of Fingerprint (the genlog digest and the classifier
//     cache key depend on it);
//   - a fingerprint lexes to itself, so a fingerprint copied from the audit
//     trail into a firewall rule matches the statements it came from. The
//     one known exception: two minus signs the lexer emitted side by side
//     ("--" from "- -#..." or "--\v") read as a comment the second time;
//   - the input used as a string literal (quoted as a client library does)
//     never reaches the fingerprint: statements differing only in a literal
//     share one fingerprint, and a password literal is not in it;
//   - a ';' inside a literal does not make a multi-statement.
func FuzzLex(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	templates := []string{
		"SELECT * FROM t WHERE a = %s AND b IN (1, 2)",
		"CREATE USER 'u'@'%' IDENTIFIED BY %s",
		"SET PASSWORD FOR 'u'@'%' = PASSWORD(%s)",
		"INSERT INTO t (a, b) VALUES (%s, 2) /* c */",
		"/*!50000 UPDATE t SET a = %s */ -- done",
	}
	f.Fuzz(func(t *testing.T, q string) {
		var lx Lexer
		st := lx.Lex(q)
		h := uint64(fnvOffset)
		for i := 0; i < len(st.Fingerprint); i++ {
			h = (h ^ uint64(st.Fingerprint[i])) * fnvPrime
		}
		if h != st.Digest {
			t.Fatalf("%q: digest %x is not the fingerprint's %x", q, st.Digest, h)
		}
		if again := lx.Lex(st.Fingerprint); again.Fingerprint != st.Fingerprint && !strings.Contains(st.Fingerprint, "--") {
			t.Fatalf("%q: fingerprint %q lexes to %q", q, st.Fingerprint, again.Fingerprint)
		}

		// q as a literal, single- and double-quoted.
		for _, quote := range []byte{'\'', '"'} {
			lit := quoteLiteral(q, quote)
			ref := quoteLiteral("x", quote)
			for _, tmpl := range templates {
				with := lx.Lex(strings.Replace(tmpl, "%s", lit, 1))
				want := lx.Lex(strings.Replace(tmpl, "%s", ref, 1))
				if with.Fingerprint != want.Fingerprint || with.Multi {
					t.Fatalf("literal %s in %q: fingerprint %q (multi %v), want %q", lit, tmpl, with.Fingerprint, with.Multi, want.Fingerprint)
				}
			}
		}
	})
}

// quoteLiteral quotes s as a MySQL string literal the way client libraries
// escape it (backslash before the quote, backslash, NUL and newlines).
func quoteLiteral(s string, quote byte) string {
	var b strings.Builder
	b.WriteByte(quote)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case quote, '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(quote)
	return b.String()
}

// writeKinds are statement kinds that must never run on a replica.
var writeKinds = map[Kind]bool{"insert": true, "update": true, "delete": true, "replace": true, "ddl": true, "dcl": true, "load": true, "call": true}

// FuzzClassify classifies arbitrary text. It must not panic (a panic here
// would take the whole proxy down: sessions do not recover), and:
//   - the class is complete (a known route, a reason, at least one kind);
//   - a multi-statement query goes to the primary;
//   - asking again hits the cache and returns the same class;
//   - a statement whose own text the parser reads as a write (or a locking
//     or otherwise primary-only statement) is never sent to a replica
//     because its fingerprint read differently.
func FuzzClassify(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	p := parser.New()
	f.Fuzz(func(t *testing.T, q string) {
		// A classifier per input: its cache must not carry one input's
		// class into another's checks.
		c := NewClassifier(16, nil)
		var lx Lexer
		st := lx.Lex(q)
		cl, _ := c.Classify(&st, q)
		if cl == nil || cl.Route > RouteLast || cl.Reason == "" || len(cl.Kinds) == 0 {
			t.Fatalf("%q: incomplete class %+v", q, cl)
		}
		if st.Multi && cl.Route != RoutePrimary {
			t.Fatalf("%q: multi-statement routed to %v (%s)", q, cl.Route, cl.Reason)
		}
		again, hit := c.Classify(&st, q)
		if !hit || again != cl {
			t.Fatalf("%q: second classification hit=%v, same=%v", q, hit, again == cl)
		}
		if cl.Route != RouteReplica {
			return
		}
		for _, k := range cl.Kinds {
			if writeKinds[k] {
				t.Fatalf("%q: kind %s routed to a replica (%s)", q, k, cl.Reason)
			}
		}
		raw := parseText(p, q)
		if raw != nil && raw.Route == RoutePrimary {
			t.Fatalf("%q: fingerprint %q routes to a replica (%s), but the text itself is %v (%s)",
				q, st.Fingerprint, cl.Reason, raw.Kinds, raw.Reason)
		}
	})
}

// parseText classifies q's own text, or returns nil when the parser cannot
// read it (or gives up on it with a panic: that input is not this check's
// business, Classify above has handled it).
func parseText(p *parser.Parser, q string) (cl *Class) {
	defer func() {
		if recover() != nil {
			cl = nil
		}
	}()
	stmt, err := p.ParseOneStmt(q, "", "")
	if err != nil {
		return nil
	}
	return classifyStmt(stmt)
}

// FuzzRedact: Literals lexes as Lex does, its spans are in order and in
// bounds, the planner survives any input, and redacting every literal
// leaves as many literals where they were.
func FuzzRedact(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	cols := NewRedactColumns([]string{"t.a", "app.t.b"})
	f.Fuzz(func(t *testing.T, q string) {
		var lx Lexer
		want := lx.Lex(q)
		st, spans := lx.Literals(q, nil)
		if st != want {
			t.Fatalf("%q: Literals lexes %+v, Lex %+v", q, st, want)
		}
		end := 0
		for _, s := range spans {
			if s.Start < end || s.End <= s.Start || s.End > len(q) || s.Out > len(st.Fingerprint) {
				t.Fatalf("%q: span %+v out of order or bounds", q, s)
			}
			end = s.End
		}
		plan := NewRedactor(4).Plan(&st, q, spans, cols, "app")
		if len(plan.Rules) != len(spans) {
			t.Fatalf("%q: %d rules for %d spans", q, len(plan.Rules), len(spans))
		}
		red := RedactText(q, spans, "'R'", func(int) bool { return true })
		_, again := lx.Literals(red, nil)
		if len(again) != len(spans) {
			t.Fatalf("%q redacted is %q: %d literals, was %d", q, red, len(again), len(spans))
		}
	})
}
