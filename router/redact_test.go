package router

import (
	"strings"
	"testing"
)

func TestRedactPlan(t *testing.T) {
	cols := NewRedactColumns([]string{"cards.pan", "shop.users.email", "Secrets.Token"})
	r := NewRedactor(16)
	for _, c := range []struct {
		name, db, query, want string
		unparsed              bool
	}{
		{"insert multi-row", "shop", "INSERT INTO cards (id, pan, note) VALUES (1, '4111111111111111', 'a'), (2, '5500000000000004', 'b')",
			"INSERT INTO cards (id, pan, note) VALUES (1, 'R', 'a'), (2, 'R', 'b')", false},
		{"insert no columns", "shop", "INSERT INTO cards VALUES (1, '4111', 'a')", "INSERT INTO cards VALUES ('R', 'R', 'R')", false},
		{"insert unlisted table", "shop", "INSERT INTO other VALUES (1, '4111')", "INSERT INTO other VALUES (1, '4111')", false},
		{"insert set", "shop", "INSERT INTO cards SET id = 3, pan = '4111'", "INSERT INTO cards SET id = 3, pan = 'R'", false},
		{"on duplicate", "shop", "INSERT INTO cards (id, note) VALUES (1, 'x') ON DUPLICATE KEY UPDATE pan = '9'",
			"INSERT INTO cards (id, note) VALUES (1, 'x') ON DUPLICATE KEY UPDATE pan = 'R'", false},
		{"update set", "shop", "UPDATE cards SET pan = '4111', note = 'n' WHERE id = 7", "UPDATE cards SET pan = 'R', note = 'n' WHERE id = 7", false},
		{"where eq reversed", "shop", "SELECT * FROM cards WHERE '4111' = pan AND id = 2", "SELECT * FROM cards WHERE 'R' = pan AND id = 2", false},
		{"where in", "shop", "SELECT id FROM cards WHERE pan IN ('1', '2', \"3\") AND id IN (4, 5)", "SELECT id FROM cards WHERE pan IN ('R', 'R', 'R') AND id IN (4, 5)", false},
		{"between", "shop", "SELECT id FROM cards WHERE pan BETWEEN '1000' AND '2000' LIMIT 10", "SELECT id FROM cards WHERE pan BETWEEN 'R' AND 'R' LIMIT 10", false},
		{"like", "shop", "SELECT id FROM cards WHERE pan LIKE '4111%' OR note LIKE 'x%'", "SELECT id FROM cards WHERE pan LIKE 'R' OR note LIKE 'x%'", false},
		{"join aliases", "shop", "SELECT c.id FROM cards c JOIN users u ON u.id = c.uid WHERE c.pan = '41' AND u.email = 'a@b.c' AND u.name = 'bob'",
			"SELECT c.id FROM cards c JOIN users u ON u.id = c.uid WHERE c.pan = 'R' AND u.email = 'R' AND u.name = 'bob'", false},
		{"db-qualified rule, other db", "other", "SELECT 1 FROM users WHERE email = 'a@b.c'", "SELECT 1 FROM users WHERE email = 'a@b.c'", false},
		{"db-qualified table", "other", "SELECT 1 FROM shop.users WHERE email = 'a@b.c' AND id = 5", "SELECT 1 FROM shop.users WHERE email = 'R' AND id = 5", false},
		{"db-qualified column", "", "SELECT 1 FROM shop.users WHERE shop.users.email = 'a' OR secrets.token = 'tk'", "SELECT 1 FROM shop.users WHERE shop.users.email = 'R' OR secrets.token = 'R'", false},
		{"negative number", "shop", "UPDATE cards SET pan = -5 WHERE id = 1", "UPDATE cards SET pan = -'R' WHERE id = 1", false},
		{"delete", "shop", "DELETE FROM cards WHERE pan = '1' AND id > 3", "DELETE FROM cards WHERE pan = 'R' AND id > 3", false},
		{"unparsable", "shop", "SELEC pan FROM cards WHERE pan = '1' AND id = 2", "SELEC pan FROM cards WHERE pan = 'R' AND id = 'R'", true},
		{"markers break the grammar, no listed column", "shop", "SET NAMES 'utf8mb4'", "SET NAMES 'utf8mb4'", false},
		{"function of a column", "shop", "SELECT id FROM users WHERE LOWER(email) = 'a@b.c' AND name = 'n'", "SELECT id FROM users WHERE LOWER(email) = 'R' AND name = 'n'", false},
		{"row comparison", "shop", "SELECT id FROM cards WHERE (pan, id) IN (('1', 2), ('3', 4)) AND note = 'n'", "SELECT id FROM cards WHERE (pan, id) IN (('R', 'R'), ('R', 'R')) AND note = 'n'", false},
		{"subquery", "shop", "SELECT id FROM cards WHERE id IN (SELECT cid FROM log WHERE at > '2020') AND pan <> '5'",
			"SELECT id FROM cards WHERE id IN (SELECT cid FROM log WHERE at > '2020') AND pan <> 'R'", false},
		{"insert select", "shop", "INSERT INTO cards (id, pan) SELECT 1, '4111' FROM dual", "INSERT INTO cards (id, pan) SELECT 1, 'R' FROM dual", false},
		{"DDL", "shop", "CREATE TABLE cards (id INT, pan VARCHAR(19) DEFAULT '0')", "CREATE TABLE cards (id INT, pan VARCHAR(19) DEFAULT '0')", false},
		{"markers break the grammar, a listed column's value", "shop", "SELECT 1 FROM cards WHERE pan = DATE '2020-01-01' AND id = 3",
			"SELECT 'R' FROM cards WHERE pan = DATE 'R' AND id = 'R'", true},
		{"multi-statement", "shop", "SELECT 1 FROM cards WHERE pan = '7'; UPDATE cards SET note = 'x' WHERE pan = '8'",
			"SELECT 1 FROM cards WHERE pan = 'R'; UPDATE cards SET note = 'x' WHERE pan = 'R'", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var l Lexer
			for round := 0; round < 2; round++ { // the second from the cache
				st, spans := l.Literals(c.query, nil)
				plan := r.Plan(&st, c.query, spans, cols, c.db)
				got := RedactText(c.query, spans, "'R'", func(i int) bool { return plan.Unparsed || plan.Rules[i] != "" })
				if got != c.want || plan.Unparsed != c.unparsed {
					t.Fatalf("round %d:\n got %s (unparsed %v)\nwant %s (unparsed %v)", round, got, plan.Unparsed, c.want, c.unparsed)
				}
			}
		})
	}
}

func TestRedactPlanPrepared(t *testing.T) {
	cols := NewRedactColumns([]string{"cards.pan"})
	r := NewRedactor(16)
	var l Lexer
	q := "SELECT id FROM cards c WHERE c.note = 'x' AND c.pan IN (?, ?) AND id = ?"
	st, spans := l.Literals(q, nil)
	plan := r.Plan(&st, q, spans, cols, "shop")
	var params []string
	for i, s := range spans {
		if s.Marker {
			params = append(params, plan.Rules[i])
		}
	}
	if strings.Join(params, ",") != "cards.pan,cards.pan," || plan.Rules[0] != "" || plan.Unparsed {
		t.Fatalf("params rules %q, plan %+v", params, plan)
	}
	// Lists of other lengths fold to the same fingerprint but are other shapes.
	q2 := "SELECT id FROM cards WHERE pan IN ('1', '2') AND id IN (3)"
	q3 := "SELECT id FROM cards WHERE pan IN ('1') AND id IN (2, 3)"
	st2, s2 := l.Literals(q2, nil)
	p2 := r.Plan(&st2, q2, s2, cols, "shop")
	st3, s3 := l.Literals(q3, nil)
	p3 := r.Plan(&st3, q3, s3, cols, "shop")
	if st2.Fingerprint != st3.Fingerprint || strings.Join(p2.Rules, ",") != "cards.pan,cards.pan," || strings.Join(p3.Rules, ",") != "cards.pan,," {
		t.Fatalf("folded shapes: %q %q", p2.Rules, p3.Rules)
	}
	if r.Len() != 3 {
		t.Fatalf("%d plans cached", r.Len())
	}
}

// BenchmarkRedact is what a statement costs the query log when
// redact_columns is set: the literals lexed, the plan from the cache, the
// text rebuilt.
func BenchmarkRedact(b *testing.B) {
	cols := NewRedactColumns([]string{"cards.pan"})
	r := NewRedactor(16)
	var l Lexer
	var spans []Span
	q := "UPDATE cards SET pan = '4111111111111111', note = 'renewed' WHERE id = 42"
	b.ReportAllocs()
	for b.Loop() {
		var st Statement
		st, spans = l.Literals(q, spans)
		plan := r.Plan(&st, q, spans, cols, "shop")
		_ = RedactText(q, spans, "'<redacted>'", func(i int) bool { return plan.Rules[i] != "" })
	}
}
