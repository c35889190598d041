// Package filter holds the filter chain: the filters the config's filters
// list sets up (regex rewrites, the firewall), which see each statement
// before it is routed and may rewrite or refuse it.
package filter

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-proxy/sluice/router"
)

// Statement is one statement on its way to a backend, as the filters that
// run before routing see it. A filter may change Text; the chain then asks
// the proxy to analyse the new text, so later filters see its fingerprint,
// kind and tables.
type Statement struct {
	User, DB string
	Text     string
	// Fingerprint is Text with literals replaced (router.Lexer).
	Fingerprint string
	Digest      uint64
	// Kinds are the statement's kinds, one per statement of a
	// multi-statement query: select, insert, update, delete, replace, ddl,
	// dcl, set, show, use, transaction, call, load, explain, other or
	// unknown (not parsed).
	Kinds []router.Kind
	// Tables are the tables the statement names, lower case.
	Tables []string
}

// Denied is a statement a filter refused. The client gets it as a MySQL error.
type Denied struct {
	Filter string
	Reason string
	// DetectOnly: the filter only reports what it would block (firewall
	// action detect); the statement goes on.
	DetectOnly bool
}

func (d *Denied) Error() string {
	return fmt.Sprintf("statement blocked by Sluice filter %q: %s", d.Filter, d.Reason)
}

// Filter runs before routing. Before may rewrite st.Text (and reports that
// it did) or refuse the statement with a *Denied.
type Filter interface {
	Name() string
	Before(st *Statement) (rewritten bool, err *Denied)
}

// Spec is one entry of the config's filters list.
type Spec struct {
	// Type is regex or firewall.
	Type string `yaml:"type"`
	// Name identifies the filter in logs, metrics and errors (default: type
	// and position).
	Name string `yaml:"name"`
	// Users and Databases scope the filter; empty means every session.
	Users     []string `yaml:"users"`
	Databases []string `yaml:"databases"`

	// regex: RE2 pattern and replacement ($1 expands groups).
	Match      string `yaml:"match"`
	Replace    string `yaml:"replace"`
	IgnoreCase bool   `yaml:"ignore_case"`

	// firewall: denylist (block matching statements) or allowlist (block
	// the others); block, or detect (log and count what would be blocked).
	Mode   string         `yaml:"mode"`
	Action string         `yaml:"action"`
	Rules  []FirewallRule `yaml:"rules"`
}

// SpecError names the key of a filter spec that is wrong.
type SpecError struct {
	Index int
	Key   string
	Msg   string
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("filters[%d].%s: %s", e.Index, e.Key, e.Msg)
}

// Chain is the ordered list of filters that run before routing. The zero
// value and nil are empty chains.
type Chain struct {
	filters []Filter
}

// NewChain builds the filters of specs, in order.
func NewChain(specs []Spec) (*Chain, error) {
	c := &Chain{}
	for i, sp := range specs {
		if sp.Name == "" {
			sp.Name = fmt.Sprintf("%s-%d", sp.Type, i)
		}
		var f Filter
		var err *SpecError
		switch sp.Type {
		case "regex":
			f, err = newRegex(sp)
		case "firewall":
			f, err = newFirewall(sp)
		case "":
			err = &SpecError{Key: "type", Msg: "missing; use regex or firewall (genlog is configured in the genlog section)"}
		default:
			err = &SpecError{Key: "type", Msg: fmt.Sprintf("unknown filter %q; use regex or firewall", sp.Type)}
		}
		if err != nil {
			err.Index = i
			return nil, err
		}
		c.filters = append(c.filters, f)
	}
	return c, nil
}

// Len is the number of filters.
func (c *Chain) Len() int {
	if c == nil {
		return 0
	}
	return len(c.filters)
}

// Before runs the filters in order. After a filter rewrites the statement,
// analyse refreshes its fingerprint, kind and tables for the next ones. It
// returns whether the text changed, and the refusal if one filter refused;
// with only detect-only refusals, the last of them (DetectOnly set).
func (c *Chain) Before(st *Statement, analyse func(*Statement)) (rewritten bool, denied *Denied) {
	if c == nil {
		return false, nil
	}
	for _, f := range c.filters {
		changed, d := f.Before(st)
		if d != nil {
			if !d.DetectOnly {
				return rewritten, d
			}
			denied = d
		}
		if changed {
			rewritten = true
			analyse(st)
		}
	}
	return rewritten, denied
}

// scope limits a filter to some users and databases.
type scope struct {
	users, dbs []string
}

func (s scope) applies(st *Statement) bool {
	return (len(s.users) == 0 || slices.Contains(s.users, st.User)) &&
		(len(s.dbs) == 0 || containsFold(s.dbs, st.DB))
}

func containsFold(list []string, v string) bool {
	for _, x := range list {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}
