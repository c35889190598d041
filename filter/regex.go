package filter

import (
	"fmt"
	"regexp"
)

// Regex rewrites statements with an RE2 pattern, as MaxScale's regexfilter
// does, to hot-patch a query the application cannot change quickly.
type Regex struct {
	name    string
	scope   scope
	re      *regexp.Regexp
	replace string
}

func newRegex(sp Spec) (*Regex, *SpecError) {
	if sp.Match == "" {
		return nil, &SpecError{Key: "match", Msg: "missing; give the RE2 pattern to rewrite"}
	}
	pattern := sp.Match
	if sp.IgnoreCase {
		pattern = "(?i)" + pattern
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, &SpecError{Key: "match", Msg: fmt.Sprintf("not an RE2 pattern: %v", err)}
	}
	return &Regex{name: sp.Name, scope: scope{sp.Users, sp.Databases}, re: re, replace: sp.Replace}, nil
}

// Name is the filter's configured name.
func (r *Regex) Name() string { return r.name }

// Before replaces every match in the statement's text.
func (r *Regex) Before(st *Statement) (bool, *Denied) {
	if !r.scope.applies(st) || !r.re.MatchString(st.Text) {
		return false, nil
	}
	out := r.re.ReplaceAllString(st.Text, r.replace)
	if out == st.Text {
		return false, nil
	}
	st.Text = out
	return true, nil
}
