package router

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/mysql"
	_ "github.com/pingcap/tidb/pkg/parser/test_driver" // literal values in the AST
)

// Route says where a statement may run.
type Route uint8

// Routes.
const (
	// RoutePrimary: writes, locking reads, anything uncertain.
	RoutePrimary Route = iota
	// RouteReplica: a read any up-to-date replica may answer.
	RouteReplica
	// RouteSession: changes session state; runs on the primary, and the
	// resulting state is replayed on the session's replica connections.
	RouteSession
	// RouteLast: about the previous statement (SHOW WARNINGS): runs where it ran.
	RouteLast
)

func (r Route) String() string {
	switch r {
	case RouteReplica:
		return "replica"
	case RouteSession:
		return "session"
	case RouteLast:
		return "last"
	}
	return "primary"
}

// Class is what the parser says about one statement shape. It is cached by
// fingerprint and shared between sessions: never modify one.
type Class struct {
	Route  Route
	Reason string
	// Kinds are the statement kinds, one per statement of a multi-statement
	// query: select, insert, update, delete, replace, ddl, dcl, set, show,
	// use, transaction, call, load, explain, other; unknown when the parser
	// could not read it.
	Kinds []Kind
	// Locks: a locking read or SELECT ... INTO runs where the writes are,
	// whatever a hint says.
	Locks bool
	// Begin starts a transaction; ReadOnly makes it START TRANSACTION READ ONLY.
	Begin, ReadOnly bool
	// Tables are the tables the statement names (lower case), checked
	// against the session's temporary tables.
	Tables []string
	// CreatesTemporary is the table a CREATE TEMPORARY TABLE makes.
	CreatesTemporary string
	// Drops are tables a DROP TABLE removes.
	Drops []string
	// SysVars are session system variables the statement sets.
	SysVars []string
	// UserVars are user variables the statement assigns.
	UserVars []string
	// UseDB is the schema a USE selects.
	UseDB string
	// Keeps names what the statement leaves on its server connection for
	// the rest of the session, which no other connection can be given: a
	// named lock (GET_LOCK), an SQL prepared statement, an XA transaction,
	// a HANDLER. With pooling the session keeps that connection.
	Keeps string
	// LastInsertID: the statement reads or sets LAST_INSERT_ID().
	LastInsertID bool
	// CalcFoundRows: SQL_CALC_FOUND_ROWS, for FOUND_ROWS() next.
	CalcFoundRows bool
	// ConnectionID: the statement calls CONNECTION_ID().
	ConnectionID bool
}

// IsWrite reports whether the statement was classified a write: one that may
// change data (DML, DDL, CALL, ...), as opposed to a read, a session command
// or a statement about the primary's state.
func (c *Class) IsWrite() bool { return c.Reason == reasonWrite }

// reasonWrite is the class reason of writes.
const reasonWrite = "write"

// primaryFunctions must run where the session's writes and locks are.
var primaryFunctions = map[string]bool{
	"last_insert_id": true, "found_rows": true, "row_count": true, "get_lock": true, "release_lock": true,
	"release_all_locks": true, "is_free_lock": true, "is_used_lock": true, "nextval": true, "lastval": true,
	"setval": true, "master_pos_wait": true, "master_gtid_wait": true, "source_pos_wait": true,
	"wait_for_executed_gtid_set": true, "uuid_short": true, "connection_id": true,
}

// primarySysVars are read from the primary: they describe the session's own writes.
var primarySysVars = map[string]bool{"identity": true, "last_insert_id": true, "last_gtid": true, "insert_id": true, "warning_count": true, "error_count": true}

// unreplayedVars are never replayed on replicas: transactions are pinned to
// the primary by status flags, and the others concern only writes.
var unreplayedVars = map[string]bool{"autocommit": true, "gtid_seq_no": true, "gtid_domain_id": true, "server_id": true,
	"sql_log_bin": true, "pseudo_thread_id": true, "insert_id": true, "last_insert_id": true, "identity": true,
	"transaction_read_only": true, "tx_read_only": true, "session_track_system_variables": true}

// Classifier classifies statements with TiDB's MySQL parser, once per
// fingerprint: the parse result is cached in a bounded LRU.
type Classifier struct {
	cache   *lru.Cache[uint64, cached]
	parsers sync.Pool
	log     *slog.Logger
}

type cached struct {
	fingerprint string
	// multi is part of the key: the fingerprint leaves out ';', so
	// "SELECT 1 DROP TABLE t" and "SELECT 1; DROP TABLE t" share one.
	multi bool
	// noEscapes too: where strings end depends on it.
	noEscapes bool
	class     *Class
}

// NewClassifier caches up to size statement shapes; log (may be nil) hears
// of statements the parser cannot parse, once per shape.
func NewClassifier(size int, log *slog.Logger) *Classifier {
	if size <= 0 {
		size = 10000
	}
	c, _ := lru.New[uint64, cached](size)
	return &Classifier{cache: c, log: log, parsers: sync.Pool{New: func() any { return parser.New() }}}
}

// Classify returns the class of st, whose text is query.
func (c *Classifier) Classify(st *Statement, query string) (*Class, bool) {
	key := st.Digest
	if st.Multi {
		key = ^key
	}
	if st.NoBackslashEscapes {
		key ^= 0x9e3779b97f4a7c15
	}
	if e, ok := c.cache.Get(key); ok && e.fingerprint == st.Fingerprint && e.multi == st.Multi && e.noEscapes == st.NoBackslashEscapes {
		return e.class, true
	}
	class := c.parse(st, query)
	c.cache.Add(key, cached{fingerprint: st.Fingerprint, multi: st.Multi, noEscapes: st.NoBackslashEscapes, class: class})
	return class, false
}

// Len is the number of cached shapes.
func (c *Classifier) Len() int { return c.cache.Len() }

func (c *Classifier) parse(st *Statement, query string) (class *Class) {
	if r := withParser(&c.parsers, st.NoBackslashEscapes, func(p *parser.Parser) { class = c.parseWith(p, st, query) }); r != nil {
		if c.log != nil {
			c.log.Warn("the SQL parser failed on a statement; it goes to the primary", "fingerprint", st.Fingerprint, "panic", fmt.Sprint(r))
		}
		return &Class{Route: RoutePrimary, Reason: "unparsed", Kinds: []Kind{KindUnknown}}
	}
	return class
}

// withParser runs f with a parser of pool set for the statement's
// sql_mode. The parser panics on some input (huge decimal literals in its
// test driver): such a statement is one Sluice cannot read, not a reason
// to stop the process; withParser returns what it panicked with, and the
// parser is not reused.
func withParser(pool *sync.Pool, noBackslashEscapes bool, f func(p *parser.Parser)) (panicked any) {
	p := pool.Get().(*parser.Parser)
	defer func() {
		if panicked = recover(); panicked == nil {
			pool.Put(p)
		}
	}()
	var mode mysql.SQLMode
	if noBackslashEscapes {
		mode = mysql.ModeNoBackslashEscapes
	}
	p.SetSQLMode(mode)
	f(p)
	return nil
}

func (c *Classifier) parseWith(p *parser.Parser, st *Statement, query string) *Class {
	if st.Multi {
		cl := &Class{Route: RoutePrimary, Reason: "multi-statement"}
		add := func(stmt ast.StmtNode) {
			v := &visitor{}
			stmt.Accept(v)
			cl.Kinds = append(cl.Kinds, stmtKind(stmt))
			cl.Tables = append(cl.Tables, v.tables...)
		}
		// (The parser may see no statement at all where the lexer saw two:
		// MariaDB's /*M! comments are executable, TiDB's grammar skips them.)
		if stmts, _, err := p.Parse(query, "", ""); err == nil && len(stmts) > 0 {
			for _, stmt := range stmts {
				add(stmt)
			}
			return cl
		}
		// The server runs the statements before the first bad one: know
		// each that parses (a DDL must not hide behind a broken SELECT).
		for _, piece := range SplitStatements(query, st.NoBackslashEscapes) {
			if stmt, err := p.ParseOneStmt(piece, "", ""); err == nil {
				add(stmt)
			} else {
				cl.Kinds = append(cl.Kinds, KindUnknown)
			}
		}
		if len(cl.Kinds) < 2 {
			cl.Kinds = append(cl.Kinds, KindUnknown)
		}
		return cl
	}
	// The fingerprint parses with ? as parameter markers; where replacing
	// literals broke the grammar (SET NAMES ?), the text itself is parsed.
	stmt, err := p.ParseOneStmt(st.Fingerprint, "", "")
	if err != nil {
		if stmt, err = p.ParseOneStmt(query, "", ""); err != nil {
			if vars := intoUserVars(st); vars != nil {
				// TiDB's grammar lacks SELECT ... INTO @var.
				return &Class{Route: RouteSession, Reason: "user variable assignment", UserVars: vars, Kinds: []Kind{KindSelect}}
			}
			if c.log != nil {
				c.log.Info("statement not parsed; it goes to the primary", "fingerprint", st.Fingerprint, "err", err)
			}
			return &Class{Route: RoutePrimary, Reason: "unparsed", Kinds: []Kind{KindUnknown}, Keeps: unparsedKeeps(st.Keyword)}
		}
	}
	return classifyStmt(stmt)
}

// intoUserVars finds the variables of SELECT ... INTO @a, @b.
func intoUserVars(st *Statement) []string {
	if st.Keyword != "SELECT" {
		return nil
	}
	fp := strings.ToLower(st.Fingerprint)
	i := strings.Index(fp, " into @")
	if i < 0 {
		return nil
	}
	var vars []string
	for _, f := range strings.FieldsFunc(fp[i+len(" into "):], func(r rune) bool { return r == ',' || r == ' ' }) {
		if !strings.HasPrefix(f, "@") || strings.HasPrefix(f, "@@") {
			break
		}
		vars = append(vars, strings.Trim(f[1:], "`'\""))
	}
	return vars
}

// unparsedKeeps is what a statement TiDB's grammar lacks leaves on its
// connection, by its first keyword.
func unparsedKeeps(keyword string) string {
	switch keyword {
	case "XA":
		return "XA transaction"
	case "HANDLER":
		return "HANDLER"
	case "PREPARE":
		return "SQL prepared statement"
	}
	return ""
}

func classifyStmt(stmt ast.StmtNode) *Class {
	cl := &Class{Route: RoutePrimary, Reason: reasonWrite, Kinds: []Kind{stmtKind(stmt)}}
	v := &visitor{}
	stmt.Accept(v)
	cl.Tables = v.tables
	cl.Keeps, cl.LastInsertID, cl.ConnectionID = v.keeps, v.lastInsertID, v.connectionID
	if sel, ok := stmt.(*ast.SelectStmt); ok && sel.SelectStmtOpts != nil {
		cl.CalcFoundRows = sel.SelectStmtOpts.CalcFoundRows
	}
	switch s := stmt.(type) {
	case *ast.SelectStmt, *ast.SetOprStmt:
		cl.Route, cl.Reason = RouteReplica, "read"
		if sel, ok := s.(*ast.SelectStmt); ok {
			if sel.LockInfo != nil && sel.LockInfo.LockType != ast.SelectLockNone {
				cl.Route, cl.Reason, cl.Locks = RoutePrimary, "locking read", true
			}
			if sel.SelectIntoOpt != nil {
				cl.Route, cl.Reason, cl.Locks = RoutePrimary, "select into", true
			}
		}
		if v.intoVars != nil || v.assigns != nil {
			cl.Route, cl.Reason = RouteSession, "user variable assignment"
			cl.UserVars = append(v.intoVars, v.assigns...)
			return cl
		}
		if v.primaryReason != "" {
			cl.Route, cl.Reason = RoutePrimary, v.primaryReason
		}
	case *ast.ShowStmt:
		switch s.Tp {
		case ast.ShowWarnings, ast.ShowErrors:
			cl.Route, cl.Reason = RouteLast, "diagnostics of the previous statement"
		case ast.ShowMasterStatus, ast.ShowProcessList, ast.ShowBinlogStatus:
			cl.Reason = "primary state"
		default:
			cl.Route, cl.Reason = RouteReplica, "show"
		}
	case *ast.ExplainStmt:
		switch s.Stmt.(type) {
		case *ast.SelectStmt, *ast.SetOprStmt, *ast.ShowStmt:
			cl.Route, cl.Reason = RouteReplica, "explain of a read"
		}
	case *ast.SetStmt:
		cl.Route, cl.Reason = RouteSession, "session variable"
		for _, a := range s.Variables {
			switch {
			case a.IsGlobal || a.IsInstance:
				cl.Route, cl.Reason = RoutePrimary, "global variable"
				cl.SysVars, cl.UserVars = nil, nil
				return cl
			case a.Name == ast.SetNames || a.Name == ast.SetCharset:
				cl.SysVars = append(cl.SysVars, "character_set_client", "character_set_results", "collation_connection")
			case a.IsSystem:
				name := strings.ToLower(a.Name)
				cl.LastInsertID = cl.LastInsertID || name == "last_insert_id" || name == "identity"
				if !unreplayedVars[name] {
					cl.SysVars = append(cl.SysVars, name)
				}
			default:
				cl.UserVars = append(cl.UserVars, strings.ToLower(a.Name))
			}
		}
	case *ast.UseStmt:
		cl.Route, cl.Reason, cl.UseDB = RouteSession, "use", s.DBName
	case *ast.BeginStmt:
		cl.Begin, cl.ReadOnly, cl.Reason = true, s.ReadOnly, "begin"
		if s.ReadOnly {
			cl.Route, cl.Reason = RouteReplica, "read-only transaction"
		}
	case *ast.CreateTableStmt:
		if s.TemporaryKeyword != ast.TemporaryNone {
			cl.CreatesTemporary = strings.ToLower(s.Table.Name.O)
			cl.Reason = "temporary table"
		}
	case *ast.DropTableStmt:
		for _, t := range s.Tables {
			cl.Drops = append(cl.Drops, strings.ToLower(t.Name.O))
		}
	case *ast.PrepareStmt:
		cl.Reason, cl.Keeps = "SQL prepared statement", "SQL prepared statement"
	case *ast.ExecuteStmt, *ast.DeallocateStmt:
		cl.Reason = "SQL prepared statement"
	case *ast.DoStmt:
		cl.Reason = "do"
	}
	return cl
}

// stmtKind is the kind of statement a firewall rule can name.
func stmtKind(stmt ast.StmtNode) Kind {
	switch s := stmt.(type) {
	case *ast.SelectStmt, *ast.SetOprStmt:
		return KindSelect
	case *ast.InsertStmt:
		if s.IsReplace {
			return KindReplace
		}
		return KindInsert
	case *ast.UpdateStmt:
		return KindUpdate
	case *ast.DeleteStmt:
		return KindDelete
	case *ast.GrantStmt, *ast.GrantRoleStmt, *ast.RevokeStmt, *ast.RevokeRoleStmt, *ast.CreateUserStmt,
		*ast.AlterUserStmt, *ast.DropUserStmt, *ast.SetPwdStmt, *ast.RenameUserStmt, *ast.SetRoleStmt, *ast.SetDefaultRoleStmt:
		return KindDCL
	case ast.DDLNode:
		return KindDDL
	case *ast.SetStmt:
		return KindSet
	case *ast.ShowStmt:
		return KindShow
	case *ast.UseStmt:
		return KindUse
	case *ast.BeginStmt, *ast.CommitStmt, *ast.RollbackStmt, *ast.SavepointStmt, *ast.ReleaseSavepointStmt:
		return KindTransaction
	case *ast.CallStmt:
		return KindCall
	case *ast.LoadDataStmt:
		return KindLoad
	case *ast.ExplainStmt:
		return KindExplain
	}
	return KindOther
}

// visitor collects what decides routing from anywhere in a statement.
type visitor struct {
	tables        []string
	intoVars      []string
	assigns       []string
	primaryReason string
	keeps         string
	lastInsertID  bool
	connectionID  bool
}

func (v *visitor) Enter(n ast.Node) (ast.Node, bool) {
	switch n := n.(type) {
	case *ast.TableName:
		name := strings.ToLower(n.Name.O)
		if len(v.tables) < 64 {
			v.tables = append(v.tables, name)
		}
	case *ast.FuncCallExpr:
		if primaryFunctions[n.FnName.L] && v.primaryReason == "" {
			v.primaryReason = "function " + strings.ToUpper(n.FnName.L)
		}
		switch n.FnName.L {
		case "get_lock":
			v.keeps = "named lock"
		case "last_insert_id":
			v.lastInsertID = true
		case "connection_id":
			v.connectionID = true
		}
	case *ast.VariableExpr:
		switch {
		case n.IsSystem && primarySysVars[strings.ToLower(n.Name)]:
			if name := strings.ToLower(n.Name); name == "last_insert_id" || name == "identity" {
				v.lastInsertID = true
			}
			if v.primaryReason == "" {
				v.primaryReason = "@@" + strings.ToLower(n.Name)
			}
		case !n.IsSystem && n.Value != nil:
			v.assigns = append(v.assigns, strings.ToLower(n.Name))
		}
	case *ast.SelectIntoOption:
		if n.Tp == ast.SelectIntoVars {
			v.intoVars = []string{}
		}
	case *ast.SelectStmt:
		if n.SelectIntoOpt != nil && n.SelectIntoOpt.Tp == ast.SelectIntoVars {
			v.intoVars = []string{}
		}
	}
	return n, false
}

func (v *visitor) Leave(n ast.Node) (ast.Node, bool) { return n, true }
