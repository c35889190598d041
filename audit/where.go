package audit

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// Where is a record filter for `sluice audit`: comparisons of gjson paths
// with literals, joined by && ("user==\"app\" && duration_us>1000000").
type Where struct {
	terms []term
}

type term struct {
	path, op string
	str      string
	num      float64
	isNum    bool
}

var ops = []string{"==", "!=", ">=", "<=", ">", "<", "~"}

// ParseWhere parses a filter expression; "" matches everything.
func ParseWhere(expr string) (*Where, error) {
	w := &Where{}
	if strings.TrimSpace(expr) == "" {
		return w, nil
	}
	for _, part := range strings.Split(expr, "&&") {
		part = strings.TrimSpace(part)
		var t term
		for _, op := range ops {
			if i := strings.Index(part, op); i > 0 {
				t.path, t.op = strings.TrimSpace(part[:i]), op
				value := strings.TrimSpace(part[i+len(op):])
				if s, err := strconv.Unquote(value); err == nil {
					t.str = s
				} else if n, err := strconv.ParseFloat(value, 64); err == nil {
					t.num, t.isNum, t.str = n, true, value
				} else {
					t.str = value
				}
				break
			}
		}
		if t.op == "" || t.path == "" {
			return nil, fmt.Errorf("--where: %q is not PATH OP VALUE (OP one of == != > >= < <= ~)", part)
		}
		if t.op != "==" && t.op != "!=" && t.op != "~" && !t.isNum {
			return nil, fmt.Errorf("--where: %q compares with %s, which needs a number", part, t.op)
		}
		w.terms = append(w.terms, t)
	}
	return w, nil
}

// Match reports whether a JSON record satisfies every term.
func (w *Where) Match(record []byte) bool {
	for _, t := range w.terms {
		v := gjson.GetBytes(record, t.path)
		var ok bool
		switch t.op {
		case "==":
			ok = v.Exists() && (v.String() == t.str || (t.isNum && v.Num == t.num && v.Type == gjson.Number))
		case "!=":
			ok = !(v.Exists() && (v.String() == t.str || (t.isNum && v.Num == t.num && v.Type == gjson.Number)))
		case "~":
			ok = strings.Contains(v.String(), t.str)
		case ">":
			ok = v.Type == gjson.Number && v.Num > t.num
		case ">=":
			ok = v.Type == gjson.Number && v.Num >= t.num
		case "<":
			ok = v.Type == gjson.Number && v.Num < t.num
		case "<=":
			ok = v.Type == gjson.Number && v.Num <= t.num
		}
		if !ok {
			return false
		}
	}
	return true
}
