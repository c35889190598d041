package proxy

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// maxSessionVars bounds the variables a session's state holds. A session
// that sets more is pinned to the primary: its state is then not replayed.
const maxSessionVars = 512

// SessionState is a session's current effective state: the latest value of
// each variable it set, its schema and its multi-statement option. Replica
// connections are brought up to it before use. It holds values, not a
// history, so its size is bounded however long the session lives.
type SessionState struct {
	// version increases with every change; a backend connection records
	// the version it has applied.
	version uint64
	// vars maps "@@name" (session system variable) or "@name" (user
	// variable) to its value as an SQL literal.
	vars map[string]stateVar
	db   string
	// multiStatements is the COM_SET_OPTION state; nil until set.
	multiStatements *bool
	// resetAt is the version of the last reset: a connection synced before
	// it holds variables the session no longer has.
	resetAt uint64
	// lastInsertID is what LAST_INSERT_ID() answers the session: the last
	// id its statements generated (pooled connections are set to it).
	lastInsertID uint64
}

type stateVar struct {
	literal string
	version uint64
}

// set records a variable's value; false when the state is full.
func (st *SessionState) set(name, literal string) bool {
	if st.vars == nil {
		st.vars = map[string]stateVar{}
	}
	if _, ok := st.vars[name]; !ok && len(st.vars) >= maxSessionVars {
		return false
	}
	st.version++
	st.vars[name] = stateVar{literal: literal, version: st.version}
	return true
}

func (st *SessionState) setDB(db string) {
	if st.db != db {
		st.version++
		st.db = db
	}
}

// reset forgets everything (COM_RESET_CONNECTION, COM_CHANGE_USER).
func (st *SessionState) reset(db string) {
	st.vars, st.multiStatements, st.lastInsertID = nil, nil, 0
	st.db = db
	st.version++
	st.resetAt = st.version
}

// replaySQL is the SET statement that brings a connection at version from
// up to date, or "" when no variable changed since.
func (st *SessionState) replaySQL(from uint64) string {
	var names []string
	for name, v := range st.vars {
		if v.version > from {
			names = append(names, name)
		}
	}
	return st.setSQL(names, nil)
}

// diffSQL is the SET statement that brings a connection whose variables are
// applied (as sessions set them; absent ones at their defaults) to exactly
// st's: st's values, and every other back to its default (a user variable
// to NULL, which is what an unset one reads; the character set to what the
// connection logged in with, its baseline). "" when they match.
func (st *SessionState) diffSQL(applied, baseline map[string]string) string {
	var names, reverts []string
	for name, v := range st.vars {
		if lit, ok := applied[name]; !ok || lit != v.literal {
			names = append(names, name)
		}
	}
	for name := range applied {
		if _, ok := st.vars[name]; !ok {
			reverts = append(reverts, name)
		}
	}
	sort.Strings(reverts)
	return st.setSQL(names, func(b *strings.Builder) {
		for i, name := range reverts {
			if i > 0 {
				b.WriteString(", ")
			}
			writeVarName(b, name)
			b.WriteString(" = ")
			switch lit, ok := baseline[name]; {
			case ok:
				b.WriteString(lit)
			case strings.HasPrefix(name, "@@"):
				b.WriteString("DEFAULT")
			default:
				b.WriteString("NULL")
			}
		}
	})
}

// setSQL is SET for reverts (written by the function, when set) then names
// in the order the session set them; "" when there is nothing to set.
func (st *SessionState) setSQL(names []string, reverts func(*strings.Builder)) string {
	var b strings.Builder
	b.WriteString("SET ")
	if reverts != nil {
		reverts(&b)
	}
	if len(names) == 0 {
		if b.Len() == len("SET ") {
			return ""
		}
		return b.String()
	}
	if b.Len() > len("SET ") {
		b.WriteString(", ")
	}
	sort.Slice(names, func(i, j int) bool { return st.vars[names[i]].version < st.vars[names[j]].version })
	for i, name := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		writeVarName(&b, name)
		b.WriteString(" = ")
		b.WriteString(st.vars[name].literal)
	}
	return b.String()
}

// writeVarName writes "@@x" as @@SESSION.x and "@x" as a quoted user variable.
func writeVarName(b *strings.Builder, name string) {
	if sys, ok := strings.CutPrefix(name, "@@"); ok {
		b.WriteString("@@SESSION.")
		b.WriteString(sys)
		return
	}
	b.WriteString("@`")
	b.WriteString(strings.ReplaceAll(name[1:], "`", "``"))
	b.WriteString("`")
}

// withAssignment adds one assignment to a SET statement, or makes one.
func withAssignment(set, assignment string) string {
	if set == "" {
		return "SET " + assignment
	}
	return set + ", " + assignment
}

// applied records that b now holds st's variables.
func (b *BackendConn) applied(st *SessionState) {
	if b.vars == nil {
		b.vars = make(map[string]string, len(st.vars))
	}
	clear(b.vars)
	for name, v := range st.vars {
		b.vars[name] = v.literal
	}
}

// baselineVars are what a session's SET NAMES or SET CHARACTER SET
// changes; reverting them to DEFAULT would give the server's global
// character set, not the one the connection logged in with.
var baselineVars = []string{"@@character_set_client", "@@character_set_results", "@@collation_connection", "@@character_set_connection"}

// readBaseline reads the character set variables a pooled connection logged
// in with.
func (b *BackendConn) readBaseline() error {
	row, err := b.queryRow(readbackSQL(baselineVars))
	if err != nil {
		return fmt.Errorf("reading the character set of a new connection to %s: %w", b.Server, err)
	}
	b.baseline = make(map[string]string, len(baselineVars))
	for i, name := range baselineVars {
		b.baseline[name] = literal(row[i])
	}
	return nil
}

// literal turns a value read from the primary into SQL that recreates it.
func literal(v Value) string {
	switch {
	case v.Null:
		return "NULL"
	case isNumericType(v.Type):
		return v.Text
	case v.Binary:
		return "x'" + hex.EncodeToString([]byte(v.Text)) + "'"
	}
	return quoteString(v.Text)
}

func isNumericType(t byte) bool {
	switch t {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG,
		mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_FLOAT, mysql.MYSQL_TYPE_DOUBLE, mysql.MYSQL_TYPE_DECIMAL,
		mysql.MYSQL_TYPE_NEWDECIMAL:
		return true
	}
	return false
}

// quoteString quotes s as an SQL string that means s whatever sql_mode says
// about backslashes: only quotes are doubled, and control bytes are hex.
func quoteString(s string) string {
	if strings.ContainsAny(s, "\\\x00\n\r\x1a") {
		return "_utf8mb4 x'" + hex.EncodeToString([]byte(s)) + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// readbackSQL is the query that reads the current values of names
// ("@@x" or "@x") from the primary.
func readbackSQL(names []string) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, name := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		if sys, ok := strings.CutPrefix(name, "@@"); ok {
			fmt.Fprintf(&b, "@@SESSION.%s", sys)
		} else {
			fmt.Fprintf(&b, "@`%s`", strings.ReplaceAll(name[1:], "`", "``"))
		}
	}
	return b.String()
}
