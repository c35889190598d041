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
	st.vars, st.multiStatements = nil, nil
	st.db = db
	st.version++
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
	if len(names) == 0 {
		return ""
	}
	sort.Slice(names, func(i, j int) bool { return st.vars[names[i]].version < st.vars[names[j]].version })
	var b strings.Builder
	b.WriteString("SET ")
	for i, name := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		if sys, ok := strings.CutPrefix(name, "@@"); ok {
			b.WriteString("@@SESSION.")
			b.WriteString(sys)
		} else {
			b.WriteString("@`")
			b.WriteString(strings.ReplaceAll(name[1:], "`", "``"))
			b.WriteString("`")
		}
		b.WriteString(" = ")
		b.WriteString(st.vars[name].literal)
	}
	return b.String()
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
