package router

import (
	"sort"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"
	driver "github.com/pingcap/tidb/pkg/parser/test_driver"
)

// RedactColumns are the columns whose values the query log withholds
// (genlog.redact_columns): "table.column" (in any database) or
// "db.table.column", matched case-insensitively.
type RedactColumns struct {
	// rules maps the lower-case name to the rule as configured.
	rules map[string]string
	// tables maps "table" and "db.table" to the first rule naming them,
	// for INSERTs that list no columns.
	tables map[string]string
	key    uint64
}

// NewRedactColumns builds the set from genlog.redact_columns (validated).
func NewRedactColumns(list []string) *RedactColumns {
	c := &RedactColumns{rules: map[string]string{}, tables: map[string]string{}, key: fnvOffset}
	for _, rule := range list {
		name := strings.ToLower(rule)
		c.rules[name] = rule
		table := name[:strings.LastIndexByte(name, '.')]
		if _, ok := c.tables[table]; !ok {
			c.tables[table] = rule
		}
		for i := 0; i < len(name); i++ {
			c.key = (c.key ^ uint64(name[i])) * fnvPrime
		}
		c.key = (c.key ^ ',') * fnvPrime
	}
	return c
}

// rule is the configured rule for a column of table db.table, or "".
func (c *RedactColumns) rule(db, table, column string) string {
	t := table + "." + column
	if r, ok := c.rules[t]; ok {
		return r
	}
	return c.rules[db+"."+t]
}

func (c *RedactColumns) tableRule(db, table string) string {
	if r, ok := c.tables[table]; ok {
		return r
	}
	return c.tables[db+"."+table]
}

// RedactPlan says which literals and ? markers of one statement shape are
// values of listed columns. Plans are cached and shared: never modify one.
type RedactPlan struct {
	// Rules[i] is the rule (as configured) span i is a value of, or "".
	Rules []string
	// Unparsed: the parser could not read the statement, or saw other
	// literals than the lexer did; every literal is to be redacted.
	Unparsed bool
}

// Redactor plans redactions with TiDB's parser, once per statement shape:
// plans are cached in a bounded LRU keyed by the fingerprint, where each
// literal stands in it (lists of different lengths fold to one
// fingerprint), the column list and the current database.
type Redactor struct {
	cache   *lru.Cache[uint64, planEntry]
	parsers sync.Pool
}

type planEntry struct {
	fingerprint, db string
	cols            *RedactColumns
	spans           int
	plan            *RedactPlan
}

// NewRedactor caches up to size plans (default 10,000).
func NewRedactor(size int) *Redactor {
	if size <= 0 {
		size = 10000
	}
	c, _ := lru.New[uint64, planEntry](size)
	return &Redactor{cache: c, parsers: sync.Pool{New: func() any { return parser.New() }}}
}

// Len is the number of cached plans.
func (r *Redactor) Len() int { return r.cache.Len() }

// Plan returns the plan for query, lexed as st with spans (Lexer.Literals);
// db is the session's current database, which unqualified tables are in.
func (r *Redactor) Plan(st *Statement, query string, spans []Span, cols *RedactColumns, db string) *RedactPlan {
	db = strings.ToLower(db)
	key := st.Digest ^ cols.key
	if st.Multi {
		key = ^key
	}
	if st.NoBackslashEscapes {
		key ^= 0x9e3779b97f4a7c15
	}
	for _, s := range spans {
		key = (key ^ uint64(s.Out)) * fnvPrime
		if s.Marker {
			key = (key ^ '?') * fnvPrime
		}
	}
	for i := 0; i < len(db); i++ {
		key = (key ^ uint64(db[i])) * fnvPrime
	}
	if e, ok := r.cache.Get(key); ok && e.fingerprint == st.Fingerprint && e.db == db && e.cols == cols && e.spans == len(spans) {
		return e.plan
	}
	plan := r.plan(st, query, spans, cols, db)
	r.cache.Add(key, planEntry{fingerprint: st.Fingerprint, db: db, cols: cols, spans: len(spans), plan: plan})
	return plan
}

func (r *Redactor) plan(st *Statement, query string, spans []Span, cols *RedactColumns, db string) (plan *RedactPlan) {
	if withParser(&r.parsers, st.NoBackslashEscapes, func(p *parser.Parser) { plan = r.planWith(p, query, spans, cols, db) }) != nil {
		return &RedactPlan{Rules: make([]string, len(spans)), Unparsed: true}
	}
	return plan
}

func (r *Redactor) planWith(p *parser.Parser, query string, spans []Span, cols *RedactColumns, db string) *RedactPlan {
	plan := &RedactPlan{Rules: make([]string, len(spans))}
	// Each literal becomes a ? padded to its length, so that the parser's
	// marker offsets are the literals' own.
	text := []byte(query)
	for _, s := range spans {
		text[s.Start] = '?'
		for i := s.Start + 1; i < s.End; i++ {
			text[i] = ' '
		}
	}
	stmts, _, err := p.Parse(string(text), "", "")
	if err != nil || len(stmts) == 0 {
		// Where markers break the grammar (SET NAMES ?, VARCHAR(?), DATE ?),
		// the text itself may parse: if no value in it is compared with,
		// assigned to or inserted into a listed column, there is nothing
		// to withhold by column.
		if stmts, _, err := p.Parse(query, "", ""); err == nil && len(stmts) > 0 {
			v := &redactWalk{cols: cols, db: db, probe: true}
			for _, stmt := range stmts {
				v.walk(stmt)
			}
			if !v.listed {
				return plan
			}
		}
		plan.Unparsed = true
		return plan
	}
	v := &redactWalk{cols: cols, db: db, spans: spans, plan: plan}
	for _, stmt := range stmts {
		v.walk(stmt)
	}
	if v.markers != len(spans) {
		// The parser skipped or invented a value (a comment it reads
		// otherwise than the server): trust neither.
		plan.Unparsed = true
	}
	return plan
}

// redactWalk marks the markers that are values of listed columns.
type redactWalk struct {
	cols    *RedactColumns
	db      string
	spans   []Span
	plan    *RedactPlan
	markers int
	// probe: only find out whether any value is a listed column's
	// (listed), the statement having literals where markers would be.
	probe  bool
	listed bool
	// tables are the statement's tables, (db, table); aliases map alias
	// and table names to them; target is an INSERT's table.
	tables  [][2]string
	aliases map[string][2]string
	target  [2]string
}

func (w *redactWalk) walk(stmt ast.StmtNode) {
	w.tables, w.aliases, w.target = nil, map[string][2]string{}, [2]string{}
	stmt.Accept(&tableNames{w: w})
	stmt.Accept(w)
}

// tableNames collects a statement's tables and their aliases.
type tableNames struct{ w *redactWalk }

func (t *tableNames) Enter(n ast.Node) (ast.Node, bool) {
	w := t.w
	if ts, ok := n.(*ast.TableSource); ok {
		if tn, ok := ts.Source.(*ast.TableName); ok {
			dbt := [2]string{tn.Schema.L, tn.Name.L}
			if dbt[0] == "" {
				dbt[0] = w.db
			}
			w.tables = append(w.tables, dbt)
			w.aliases[dbt[1]] = dbt
			if ts.AsName.L != "" {
				w.aliases[ts.AsName.L] = dbt
			}
		}
	}
	if ins, ok := n.(*ast.InsertStmt); ok && ins.Table != nil && ins.Table.TableRefs != nil {
		if ts, ok := ins.Table.TableRefs.Left.(*ast.TableSource); ok {
			if tn, ok := ts.Source.(*ast.TableName); ok {
				w.target = [2]string{tn.Schema.L, tn.Name.L}
				if w.target[0] == "" {
					w.target[0] = w.db
				}
			}
		}
	}
	return n, false
}

func (t *tableNames) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// rule is the rule a column reference falls under: a qualified column by
// its table (an alias resolved), an unqualified one by any of the
// statement's tables (the parser does not know which has it).
func (w *redactWalk) rule(cn *ast.ColumnName) string {
	if cn == nil {
		return ""
	}
	if cn.Table.L != "" {
		dbt := [2]string{cn.Schema.L, cn.Table.L}
		if dbt[0] == "" {
			if t, ok := w.aliases[cn.Table.L]; ok {
				dbt = t
			} else {
				dbt[0] = w.db
			}
		}
		return w.cols.rule(dbt[0], dbt[1], cn.Name.L)
	}
	for _, t := range w.tables {
		if r := w.cols.rule(t[0], t[1], cn.Name.L); r != "" {
			return r
		}
	}
	return ""
}

// ruleIn is the rule of the first listed column in e, which may wrap it
// (LOWER(email), a row (pan, id)), subqueries aside: the values on the
// other side of the comparison are then withheld, all of them.
func (w *redactWalk) ruleIn(e ast.ExprNode) string {
	f := &listedColumn{w: w}
	e.Accept(f)
	return f.rule
}

type listedColumn struct {
	w    *redactWalk
	rule string
}

func (f *listedColumn) Enter(n ast.Node) (ast.Node, bool) {
	switch x := n.(type) {
	case *ast.SubqueryExpr:
		return n, true
	case *ast.ColumnNameExpr:
		if f.rule == "" {
			f.rule = f.w.rule(x.Name)
		}
	}
	return n, f.rule != ""
}

func (f *listedColumn) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// mark gives every marker in the values the rule.
func (w *redactWalk) mark(rule string, values ...ast.ExprNode) {
	if rule == "" {
		return
	}
	if w.probe {
		w.listed = w.listed || len(values) > 0
		return
	}
	for _, v := range values {
		if v != nil {
			v.Accept(&markerRule{w: w, rule: rule})
		}
	}
}

type markerRule struct {
	w    *redactWalk
	rule string
}

func (m *markerRule) Enter(n ast.Node) (ast.Node, bool) {
	if pm, ok := n.(*driver.ParamMarkerExpr); ok {
		spans := m.w.spans
		if i := sort.Search(len(spans), func(i int) bool { return spans[i].Start >= pm.Offset }); i < len(spans) && spans[i].Start == pm.Offset {
			m.w.plan.Rules[i] = m.rule
		}
	}
	return n, false
}

func (m *markerRule) Leave(n ast.Node) (ast.Node, bool) { return n, true }

func (w *redactWalk) Enter(n ast.Node) (ast.Node, bool) {
	switch x := n.(type) {
	case *driver.ParamMarkerExpr:
		w.markers++
	case *ast.BinaryOperationExpr:
		switch x.Op {
		case opcode.EQ, opcode.NE, opcode.LT, opcode.LE, opcode.GT, opcode.GE, opcode.NullEQ:
			w.mark(w.ruleIn(x.L), x.R)
			w.mark(w.ruleIn(x.R), x.L)
		}
	case *ast.PatternInExpr:
		w.mark(w.ruleIn(x.Expr), x.List...)
	case *ast.BetweenExpr:
		w.mark(w.ruleIn(x.Expr), x.Left, x.Right)
	case *ast.PatternLikeOrIlikeExpr:
		w.mark(w.ruleIn(x.Expr), x.Pattern)
	case *ast.PatternRegexpExpr:
		w.mark(w.ruleIn(x.Expr), x.Pattern)
	case *ast.Assignment:
		// UPDATE ... SET, INSERT ... SET, ON DUPLICATE KEY UPDATE.
		rule := w.rule(x.Column)
		if x.Column != nil && x.Column.Table.L == "" && w.target[1] != "" {
			rule = w.cols.rule(w.target[0], w.target[1], x.Column.Name.L)
		}
		w.mark(rule, x.Expr)
	case *ast.InsertStmt:
		if w.target[1] == "" {
			break
		}
		if sel, ok := x.Select.(*ast.SelectStmt); ok && sel.Fields != nil && len(x.Columns) > 0 {
			// INSERT INTO t (cols) SELECT values...
			for j, f := range sel.Fields.Fields {
				if j < len(x.Columns) && f.Expr != nil {
					w.mark(w.cols.rule(w.target[0], w.target[1], x.Columns[j].Name.L), f.Expr)
				}
			}
		}
		for _, row := range x.Lists {
			if len(x.Columns) == 0 {
				// INSERT INTO t VALUES (...): which value is which column is
				// the table's business; a table with a listed column has
				// all its values withheld.
				w.mark(w.cols.tableRule(w.target[0], w.target[1]), row...)
				continue
			}
			for j, e := range row {
				if j < len(x.Columns) {
					w.mark(w.cols.rule(w.target[0], w.target[1], x.Columns[j].Name.L), e)
				}
			}
		}
	}
	return n, false
}

func (w *redactWalk) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// RedactText returns query with the spans for which redact says so
// replaced by placeholder.
func RedactText(query string, spans []Span, placeholder string, redact func(i int) bool) string {
	var b strings.Builder
	last := 0
	for i, s := range spans {
		if s.Marker || !redact(i) {
			continue
		}
		if last == 0 {
			b.Grow(len(query))
		}
		b.WriteString(query[last:s.Start])
		// A quote on either side would join the placeholder to its
		// neighbour ("1'a'" is two literals; "'R''a'" would be one).
		if out := b.String(); out != "" && isQuote(out[len(out)-1]) {
			b.WriteByte(' ')
		}
		b.WriteString(placeholder)
		if s.End < len(query) && isQuote(query[s.End]) {
			b.WriteByte(' ')
		}
		last = s.End
	}
	if last == 0 {
		return query
	}
	b.WriteString(query[last:])
	return b.String()
}

func isQuote(c byte) bool { return c == '\'' || c == '"' || c == '`' }
