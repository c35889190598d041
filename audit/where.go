package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser/lexer"
	"github.com/expr-lang/expr/vm"
)

// Where is a record filter for `sluice audit search|tail --where` and the
// admin API's audit tail: an expr-lang expression (https://expr-lang.org)
// over the record's fields, e.g.
//
//	user == "app" && duration_us > 1000000
//	(user == "app" || user == "bob") && query ~ "orders"
//	type == "auth" && !ok
//
// Every top-level key of the record's JSON is a variable; a field the
// record does not have is nil there: gtid == "x" is false on a record
// without gtid, gtid != "x" true, and gtid > "x", which cannot be
// evaluated, does not match it either.
// `a ~ b` is true when the text of a contains the text of b, as in the old
// --where: like expr's `a contains b`, but a number or boolean is taken as
// its JSON text and a missing field as ""; regular expressions are
// `a matches "re"`.
type Where struct {
	prog *vm.Program // nil matches everything
}

// ParseWhere compiles a filter expression; "" matches everything. Its
// errors are *WhereError, naming the line and column.
func ParseWhere(src string) (*Where, error) {
	if strings.TrimSpace(src) == "" {
		return &Where{}, nil
	}
	rewritten, shifts := rewriteTilde(src)
	prog, err := expr.Compile(rewritten, expr.Env(fieldsNamedLikeBuiltins(rewritten)), expr.AllowUndefinedVariables(), expr.AsBool(),
		expr.Function(tildeFunc, tilde, new(func(any, any) bool)), expr.Patch(shifts))
	if err != nil {
		var fe *file.Error
		if !errors.As(err, &fe) {
			return nil, &WhereError{Msg: err.Error()}
		}
		fe.From = shifts.original(fe.From)
		fe.To = shifts.original(fe.To)
		fe.Snippet = ""
		fe.Bind(file.NewSource(src))
		return nil, &WhereError{Msg: fe.Message, Line: fe.Line, Column: fe.Column + 1, Snippet: fe.Snippet}
	}
	return &Where{prog: prog}, nil
}

// WhereError is an expression that does not compile, with where in it.
type WhereError struct {
	Msg          string
	Line, Column int    // from 1; 0 when unknown
	Snippet      string // the line and a caret under the column, or ""
}

func (e *WhereError) Error() string {
	if e.Line == 0 {
		return "--where: " + e.Msg
	}
	return fmt.Sprintf("--where: %s (%d:%d)%s", e.Msg, e.Line, e.Column, e.Snippet)
}

// Match reports whether a JSON record satisfies the expression. A record
// the expression cannot be evaluated on (not JSON, a field of another
// type than the expression compares it with) does not match.
func (w *Where) Match(record []byte) bool {
	if w == nil || w.prog == nil {
		return true
	}
	var env map[string]any
	if err := json.Unmarshal(record, &env); err != nil {
		return false
	}
	out, err := expr.Run(w.prog, env)
	if err != nil {
		return false
	}
	ok, _ := out.(bool)
	return ok
}

// fieldsNamedLikeBuiltins declares, as the record's fields, the names
// the expression uses as values that expr also has as functions: `type`
// in `type == "query"` is the record's type, not expr's type().
func fieldsNamedLikeBuiltins(src string) map[string]any {
	env := map[string]any{}
	tokens, err := lexer.Lex(file.NewSource(src))
	if err != nil {
		return env // Compile reports it
	}
	for i, t := range tokens {
		if t.Kind != lexer.Identifier {
			continue
		}
		if _, builtin := builtin.Index[t.Value]; !builtin {
			continue
		}
		called := i+1 < len(tokens) && tokens[i+1].Is(lexer.Bracket, "(")
		member := i > 0 && (tokens[i-1].Is(lexer.Operator, ".") || tokens[i-1].Is(lexer.Operator, "?."))
		if !called && !member {
			env[t.Value] = nil
		}
	}
	return env
}

// tildeShifts records where rewriteTilde replaced "~", in runes of the
// rewritten source, to map expr's error positions back to the user's.
type tildeShifts []int

const tildeOp = " contains "

// original maps a rune offset of the rewritten source to the source.
func (s tildeShifts) original(at int) int {
	shift := 0
	for _, p := range s {
		switch {
		case at >= p+len(tildeOp):
			shift += len(tildeOp) - 1
		case at >= p:
			return p - shift
		}
	}
	return at - shift
}

// Visit turns each "contains" rewriteTilde wrote into a call of tilde.
func (s tildeShifts) Visit(node *ast.Node) {
	b, ok := (*node).(*ast.BinaryNode)
	if !ok || b.Operator != "contains" {
		return
	}
	// The operator's location is the keyword's, after tildeOp's space.
	if _, found := slices.BinarySearch(s, b.Location().From-1); found {
		ast.Patch(node, &ast.CallNode{Callee: &ast.IdentifierNode{Value: tildeFunc}, Arguments: []ast.Node{b.Left, b.Right}})
	}
}

// tildeFunc is the function a ~ b compiles to.
const tildeFunc = "_tilde"

// tilde is a ~ b: whether the text of a contains the text of b, as the
// old --where had it (a number as its JSON text, a missing field as "").
func tilde(args ...any) (any, error) {
	return strings.Contains(text(args[0]), text(args[1])), nil
}

// text is a record value as text.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// rewriteTilde turns every "~" outside string literals into expr's
// "contains" operator, which the patch (Visit) makes a call of tilde.
func rewriteTilde(src string) (string, tildeShifts) {
	if !strings.Contains(src, "~") {
		return src, nil
	}
	var b strings.Builder
	var shifts tildeShifts
	var quote rune // the open string literal's quote, 0 outside one
	escaped := false
	n := 0 // runes written
	for _, r := range src {
		switch {
		case quote != 0:
			switch {
			case escaped:
				escaped = false
			case r == '\\' && quote != '`':
				escaped = true
			case r == quote:
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '~':
			shifts = append(shifts, n)
			b.WriteString(tildeOp)
			n += len(tildeOp)
			continue
		}
		b.WriteRune(r)
		n++
	}
	return b.String(), shifts
}
