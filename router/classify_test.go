package router

import "testing"

func TestClassify(t *testing.T) {
	c := NewClassifier(100, nil)
	var lx Lexer
	cases := []struct {
		sql    string
		route  Route
		reason string
	}{
		{"SELECT * FROM t WHERE id = 5", RouteReplica, "read"},
		{"select c from sbtest1 where id=10", RouteReplica, "read"},
		{"SELECT * FROM t WHERE id = 5 FOR UPDATE", RoutePrimary, "locking read"},
		{"SELECT * FROM t LOCK IN SHARE MODE", RoutePrimary, "locking read"},
		{"SELECT * FROM t FOR SHARE", RoutePrimary, "locking read"},
		{"SELECT LAST_INSERT_ID()", RoutePrimary, "function LAST_INSERT_ID"},
		{"SELECT @@identity", RoutePrimary, "@@identity"},
		{"SELECT @@last_insert_id", RoutePrimary, "@@last_insert_id"},
		{"SELECT GET_LOCK('a', 1)", RoutePrimary, "function GET_LOCK"},
		{"SELECT FOUND_ROWS()", RoutePrimary, "function FOUND_ROWS"},
		{"SELECT NEXTVAL(s)", RoutePrimary, "function NEXTVAL"},
		{"SELECT a FROM t INTO OUTFILE '/tmp/x'", RoutePrimary, "select into"},
		{"SELECT 1 UNION SELECT 2", RouteReplica, "read"},
		{"SELECT (@x := 5)", RouteSession, "user variable assignment"},
		{"SELECT id INTO @myid FROM t LIMIT 1", RouteSession, "user variable assignment"},
		{"INSERT INTO t VALUES (1, 'a')", RoutePrimary, "write"},
		{"UPDATE t SET a = 1", RoutePrimary, "write"},
		{"DELETE FROM t", RoutePrimary, "write"},
		{"CREATE TABLE x (a INT)", RoutePrimary, "write"},
		{"SHOW TABLES", RouteReplica, "show"},
		{"SHOW WARNINGS", RouteLast, "diagnostics of the previous statement"},
		{"SHOW MASTER STATUS", RoutePrimary, "primary state"},
		{"DESCRIBE t", RouteReplica, "explain of a read"},
		{"EXPLAIN SELECT * FROM t", RouteReplica, "explain of a read"},
		{"SET NAMES utf8mb4", RouteSession, "session variable"},
		{"SET autocommit = 0", RouteSession, "session variable"},
		{"SET SESSION sql_mode = 'ANSI'", RouteSession, "session variable"},
		{"SET @a = 1, @b = 'x'", RouteSession, "session variable"},
		{"SET GLOBAL max_connections = 10", RoutePrimary, "global variable"},
		{"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", RouteSession, "session variable"},
		{"USE app", RouteSession, "use"},
		{"BEGIN", RoutePrimary, "begin"},
		{"START TRANSACTION READ ONLY", RouteReplica, "read-only transaction"},
		{"CALL p()", RoutePrimary, "write"},
		{"LOCK TABLES t READ", RoutePrimary, "write"},
		{"XA START 'x'", RoutePrimary, "unparsed"},
		{"HANDLER t OPEN", RoutePrimary, "unparsed"},
		{"SELECT 1; SELECT 2", RoutePrimary, "multi-statement"},
		{"this is not sql", RoutePrimary, "unparsed"},
		{"CREATE TEMPORARY TABLE tmp1 (a INT)", RoutePrimary, "temporary table"},
	}
	for _, cs := range cases {
		st := lx.Lex(cs.sql)
		cl, _ := c.Classify(&st, cs.sql)
		if cl.Route != cs.route || cl.Reason != cs.reason {
			t.Errorf("%q: %v (%s), want %v (%s)", cs.sql, cl.Route, cl.Reason, cs.route, cs.reason)
		}
	}
}

func TestClassifyTracksState(t *testing.T) {
	c := NewClassifier(100, nil)
	var lx Lexer
	get := func(sql string) *Class {
		st := lx.Lex(sql)
		cl, _ := c.Classify(&st, sql)
		return cl
	}
	if cl := get("SELECT id INTO @a, @b FROM t"); len(cl.UserVars) != 2 || cl.UserVars[1] != "b" {
		t.Fatalf("into vars %v", cl.UserVars)
	}
	if cl := get("SET @x = 1, SESSION sql_mode = 'ANSI', autocommit = 1"); len(cl.UserVars) != 1 || len(cl.SysVars) != 1 || cl.SysVars[0] != "sql_mode" {
		t.Fatalf("set vars %v %v", cl.UserVars, cl.SysVars)
	}
	if cl := get("CREATE TEMPORARY TABLE Tmp1 (a INT)"); cl.CreatesTemporary != "tmp1" {
		t.Fatalf("temporary %q", cl.CreatesTemporary)
	}
	if cl := get("DROP TABLE tmp1, t2"); len(cl.Drops) != 2 {
		t.Fatalf("drops %v", cl.Drops)
	}
	if cl := get("SELECT * FROM tmp1 JOIN db.t2 ON 1"); len(cl.Tables) != 2 || cl.Tables[0] != "tmp1" {
		t.Fatalf("tables %v", cl.Tables)
	}
	if cl := get("USE app"); cl.UseDB != "app" {
		t.Fatalf("use %q", cl.UseDB)
	}
	// Shapes are cached: the same shape with other literals hits.
	st := lx.Lex("SELECT * FROM t WHERE id = 99")
	c.Classify(&st, "")
	st = lx.Lex("SELECT * FROM t WHERE id = 12345")
	if _, hit := c.Classify(&st, ""); !hit {
		t.Fatal("same shape missed the cache")
	}
}

func TestLexer(t *testing.T) {
	var lx Lexer
	cases := []struct{ sql, fp, kw string }{
		{"SELECT * FROM t WHERE id = 5", "SELECT * FROM t WHERE id = ?", "SELECT"},
		{"  select  c from   t1 where id in (1, 2, 3)  ", "select c from t1 where id in (?)", "SELECT"},
		{"INSERT INTO t VALUES ('a''b', \"c\\\"d\", 1.5e3, 0xFF, x'0a')", "INSERT INTO t VALUES (?)", "INSERT"},
		{"/* sluice: route=replica */ SELECT 1", "SELECT ?", "SELECT"},
		{"SELECT 1 -- trailing\n", "SELECT ?", "SELECT"},
		{"SELECT `a b` FROM `t-1`", "SELECT `a b` FROM `t-1`", "SELECT"},
		{"/*!40101 SET NAMES utf8 */", "SET NAMES utf8", "SET"},
		{"SELECT -1", "SELECT -?", "SELECT"},
	}
	for _, c := range cases {
		st := lx.Lex(c.sql)
		if st.Fingerprint != c.fp || st.Keyword != c.kw {
			t.Errorf("%q: fingerprint %q keyword %q, want %q %q", c.sql, st.Fingerprint, st.Keyword, c.fp, c.kw)
		}
	}
	if !lx.Lex("SELECT 1; SELECT 2").Multi || lx.Lex("SELECT 1;").Multi || lx.Lex("SELECT ';'").Multi {
		t.Error("multi-statement detection")
	}
	hints := map[string]Hint{
		"/* sluice: route=primary */ SELECT 1":               {Route: "primary"},
		"SELECT 1 /* sluice: route=server:db2 max_lag=2s */": {Route: "server", Server: "db2", MaxLag: "2s"},
		"SELECT 1 -- maxscale route to slave":                {Route: "replica"},
		"SELECT 1 -- maxscale route to master":               {Route: "primary"},
		"SELECT 1 -- maxscale route to server db3":           {Route: "server", Server: "db3"},
		"SELECT 1 /* sluice: ROUTE=Server:DB2 */":            {Route: "server", Server: "DB2"},
		"SELECT 1 /* sluice: route=Replica */":               {Route: "replica"},
		// Lower-casing invalid UTF-8 lengthens it; the name must still be cut
		// from the original text (this panicked once, found by FuzzLex).
		"SELECT 1 /* sluice: route=server:\xff\xfe */": {Route: "server", Server: "\xff\xfe"},
	}
	for sql, want := range hints {
		if got := lx.Lex(sql).Hint; got != want {
			t.Errorf("%q: hint %+v, want %+v", sql, got, want)
		}
	}
	a, b := lx.Lex("SELECT * FROM t WHERE id = 1"), lx.Lex("SELECT * FROM t WHERE id = 2")
	if a.Digest != b.Digest {
		t.Error("same shape, different digests")
	}
}

func BenchmarkLexAndClassify(b *testing.B) {
	const q = "SELECT c FROM sbtest1 WHERE id=4711"
	b.Run("hit", func(b *testing.B) {
		c := NewClassifier(100, nil)
		var lx Lexer
		b.ReportAllocs()
		for b.Loop() {
			st := lx.Lex(q)
			c.Classify(&st, q)
		}
	})
	b.Run("miss", func(b *testing.B) {
		c := NewClassifier(100, nil)
		var lx Lexer
		st := lx.Lex(q)
		b.ReportAllocs()
		for b.Loop() {
			c.parse(&st, q)
		}
	})
}

// TestClassifyConnectionState covers what pooling asks of a statement:
// whether it leaves something on its connection, touches LAST_INSERT_ID(),
// or asks FOUND_ROWS() to be kept.
func TestClassifyConnectionState(t *testing.T) {
	c := NewClassifier(100, nil)
	var lx Lexer
	for _, tc := range []struct {
		sql           string
		keeps         string
		lastInsertID  bool
		calcFoundRows bool
	}{
		{sql: "SELECT c FROM sbtest1 WHERE id = 1"},
		{sql: "SELECT GET_LOCK('job', 10)", keeps: "named lock"},
		{sql: "DO GET_LOCK('job', 10)", keeps: "named lock"},
		{sql: "SELECT RELEASE_LOCK('job')"},
		{sql: "PREPARE s FROM 'SELECT 1'", keeps: "SQL prepared statement"},
		{sql: "EXECUTE s"},
		{sql: "XA START 'x'", keeps: "XA transaction"},
		{sql: "HANDLER t OPEN", keeps: "HANDLER"},
		{sql: "SELECT LAST_INSERT_ID()", lastInsertID: true},
		{sql: "SELECT LAST_INSERT_ID(42)", lastInsertID: true},
		{sql: "UPDATE t SET id = LAST_INSERT_ID(id + 1)", lastInsertID: true},
		{sql: "SELECT @@identity", lastInsertID: true},
		{sql: "SET @@last_insert_id = 7", lastInsertID: true},
		{sql: "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1", calcFoundRows: true},
		{sql: "SELECT FOUND_ROWS()"},
	} {
		st := lx.Lex(tc.sql)
		cl, _ := c.Classify(&st, tc.sql)
		if cl.Keeps != tc.keeps || cl.LastInsertID != tc.lastInsertID || cl.CalcFoundRows != tc.calcFoundRows {
			t.Errorf("%s: keeps %q, last insert id %v, calc found rows %v; want %q, %v, %v",
				tc.sql, cl.Keeps, cl.LastInsertID, cl.CalcFoundRows, tc.keeps, tc.lastInsertID, tc.calcFoundRows)
		}
	}
}
