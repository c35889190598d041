package filter

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-proxy/sluice/router"
)

// FirewallRule matches statements. Every key set must match: a rule with a
// table and a kind matches statements of that kind naming that table.
type FirewallRule struct {
	// Fingerprint is a statement whose shape matches: literals, spacing
	// and case do not matter ("DELETE FROM t WHERE id = 1" matches every
	// such delete).
	Fingerprint string `yaml:"fingerprint"`
	// Table matches statements naming this table (case-insensitive).
	Table string `yaml:"table"`
	// Kind matches a statement kind: select, insert, update, delete,
	// replace, ddl, dcl, set, show, use, transaction, call, load, explain,
	// other, unknown (the parser could not read it), or multi (a
	// multi-statement query). A denylist kind also matches a multi-statement
	// query with one statement of that kind; an allowlist lets a
	// multi-statement query through only with a rule of kind multi.
	Kind string `yaml:"kind"`
}

type firewallRule struct {
	fingerprint string
	table       string
	kind        router.Kind
}

// matches reports whether st matches the rule. In a denylist (anyPart) a
// multi-statement query matches a kind any of its statements has, so that
// "SELECT 1; DROP TABLE t" cannot slip a DDL past a rule against DDL.
func (r *firewallRule) matches(st *Statement, anyPart bool) bool {
	if r.fingerprint != "" && r.fingerprint != shape(st.Fingerprint) {
		return false
	}
	if r.kind != "" {
		multi := len(st.Kinds) > 1
		switch {
		case r.kind == router.KindMulti:
			if !multi {
				return false
			}
		case multi && !anyPart, !slices.Contains(st.Kinds, r.kind):
			return false
		}
	}
	if r.table != "" && !slices.Contains(st.Tables, r.table) {
		return false
	}
	return true
}

func (r *firewallRule) String() string {
	var parts []string
	if r.fingerprint != "" {
		parts = append(parts, "fingerprint "+r.fingerprint)
	}
	if r.table != "" {
		parts = append(parts, "table "+r.table)
	}
	if r.kind != "" {
		parts = append(parts, "kind "+string(r.kind))
	}
	return strings.Join(parts, ", ")
}

// shape is a fingerprint with case and spacing made uniform: its tokens
// (runs of word characters, or single other characters), lower case, one
// space apart. The lexer keeps the client's case and operator spacing.
func shape(fingerprint string) string {
	var b strings.Builder
	b.Grow(len(fingerprint) + 8)
	word := false
	for i := 0; i < len(fingerprint); i++ {
		c := fingerprint[i]
		if c == ' ' || c == '\t' || c == '\n' {
			word = false
			continue
		}
		w := c == '_' || c == '$' || c >= 0x80 || (c|0x20 >= 'a' && c|0x20 <= 'z') || (c >= '0' && c <= '9')
		if b.Len() > 0 && !(w && word) {
			b.WriteByte(' ')
		}
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		b.WriteByte(c)
		word = w
	}
	return b.String()
}

// Firewall blocks statements by fingerprint, table or kind, for some users
// or all: in denylist mode those matching a rule, in allowlist mode those
// matching none. In detect mode it only logs and counts what it would block.
type Firewall struct {
	name      string
	scope     scope
	allowlist bool
	detect    bool
	rules     []firewallRule
}

func newFirewall(sp Spec) (*Firewall, *SpecError) {
	f := &Firewall{name: sp.Name, scope: scope{sp.Users, sp.Databases}}
	switch sp.Mode {
	case "", "denylist":
	case "allowlist":
		f.allowlist = true
	default:
		return nil, &SpecError{Key: "mode", Msg: fmt.Sprintf("unknown mode %q; use denylist or allowlist", sp.Mode)}
	}
	switch sp.Action {
	case "", "block":
	case "detect":
		f.detect = true
	default:
		return nil, &SpecError{Key: "action", Msg: fmt.Sprintf("unknown action %q; use block, or detect to only log", sp.Action)}
	}
	if len(sp.Rules) == 0 && !f.allowlist {
		return nil, &SpecError{Key: "rules", Msg: "empty; a denylist needs at least one rule (fingerprint, table or kind)"}
	}
	var lx router.Lexer
	for i, r := range sp.Rules {
		fr := firewallRule{table: strings.ToLower(r.Table), kind: router.Kind(strings.ToLower(r.Kind))}
		if r.Fingerprint == "" && r.Table == "" && r.Kind == "" {
			return nil, &SpecError{Key: fmt.Sprintf("rules[%d]", i), Msg: "empty rule; set fingerprint, table or kind"}
		}
		if fr.kind != "" && !slices.Contains(router.Kinds, fr.kind) {
			return nil, &SpecError{Key: fmt.Sprintf("rules[%d].kind", i), Msg: fmt.Sprintf("unknown kind %q; use one of %s", r.Kind, kindList())}
		}
		if r.Fingerprint != "" {
			st := lx.Lex(r.Fingerprint)
			fr.fingerprint = shape(st.Fingerprint)
		}
		f.rules = append(f.rules, fr)
	}
	return f, nil
}

// Name is the filter's configured name.
func (f *Firewall) Name() string { return f.name }

// Before refuses a statement the rules forbid.
func (f *Firewall) Before(st *Statement) (bool, *Denied) {
	if !f.scope.applies(st) {
		return false, nil
	}
	var reason string
	hit := -1
	for i := range f.rules {
		if f.rules[i].matches(st, !f.allowlist) {
			hit = i
			break
		}
	}
	switch {
	case f.allowlist && hit < 0:
		reason = "not on the allowlist"
	case !f.allowlist && hit >= 0:
		reason = "matches the denylist rule " + f.rules[hit].String()
	default:
		return false, nil
	}
	return false, &Denied{Filter: f.name, Reason: reason, DetectOnly: f.detect}
}

// kindList names the kinds a rule can name, for an error message.
func kindList() string {
	names := make([]string, len(router.Kinds))
	for i, k := range router.Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}
