package logbroker

import (
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// aclOp is an operation of broker.acls, numbered as Kafka's ACLOperation.
type aclOp = kmsg.ACLOperation

// operationsByName are the operations broker.acls accepts.
var operationsByName = map[string]aclOp{
	"all":              kmsg.ACLOperationAll,
	"read":             kmsg.ACLOperationRead,
	"write":            kmsg.ACLOperationWrite,
	"create":           kmsg.ACLOperationCreate,
	"delete":           kmsg.ACLOperationDelete,
	"alter":            kmsg.ACLOperationAlter,
	"describe":         kmsg.ACLOperationDescribe,
	"describe_configs": kmsg.ACLOperationDescribeConfigs,
	"alter_configs":    kmsg.ACLOperationAlterConfigs,
}

func parseOperation(s string) (aclOp, bool) {
	op, ok := operationsByName[strings.ToLower(s)]
	return op, ok
}

func operationNames() []string {
	out := make([]string, 0, len(operationsByName))
	for k := range operationsByName {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// implies reports whether holding op grants want, as in Kafka: read,
// write, delete and alter imply describe; alter_configs implies
// describe_configs; all implies everything.
func implies(op, want aclOp) bool {
	if op == want || op == kmsg.ACLOperationAll {
		return true
	}
	switch want {
	case kmsg.ACLOperationDescribe:
		return op == kmsg.ACLOperationRead || op == kmsg.ACLOperationWrite || op == kmsg.ACLOperationDelete || op == kmsg.ACLOperationAlter
	case kmsg.ACLOperationDescribeConfigs:
		return op == kmsg.ACLOperationAlterConfigs
	}
	return false
}

// resourceKind is what an ACL applies to.
type resourceKind int8

const (
	resTopic resourceKind = iota
	resGroup
	resCluster
)

// pattern matches resource names: every name, one name, or names with a
// prefix.
type pattern struct {
	any     bool
	prefix  bool
	literal string // the name, or the prefix
}

// parsePattern reads "*", "prefix:P", "P*" or a literal name.
func parsePattern(s string) (pattern, error) {
	switch {
	case s == "*":
		return pattern{any: true}, nil
	case strings.HasPrefix(s, "prefix:"):
		p := strings.TrimPrefix(s, "prefix:")
		if p == "" {
			return pattern{}, fmt.Errorf("%q: empty prefix; use \"*\" for every name", s)
		}
		return pattern{prefix: true, literal: p}, nil
	case strings.HasSuffix(s, "*"):
		p := strings.TrimSuffix(s, "*")
		if strings.Contains(p, "*") {
			return pattern{}, fmt.Errorf("%q: '*' only as the whole name or at the end of a prefix", s)
		}
		return pattern{prefix: true, literal: p}, nil
	case s == "" || strings.Contains(s, "*"):
		return pattern{}, fmt.Errorf("%q: '*' only as the whole name or at the end of a prefix", s)
	}
	return pattern{literal: s}, nil
}

func (p pattern) matches(name string) bool {
	switch {
	case p.any:
		return true
	case p.prefix:
		return strings.HasPrefix(name, p.literal)
	}
	return p.literal == name
}

// String is the pattern as Kafka's DescribeAcls shows it.
func (p pattern) kafka() (string, kmsg.ACLResourcePatternType) {
	switch {
	case p.any:
		return "*", kmsg.ACLResourcePatternTypeLiteral
	case p.prefix:
		return p.literal, kmsg.ACLResourcePatternTypePrefixed
	}
	return p.literal, kmsg.ACLResourcePatternTypeLiteral
}

// aclRule is one broker.acls entry, parsed.
type aclRule struct {
	principal string // without "User:"; "*" for everyone
	ops       []aclOp
	topics    []pattern
	groups    []pattern
	cluster   bool
}

// authorizer decides requests against the rules. A nil authorizer allows
// everything (no authentication and no ACLs configured), except what
// protects the audit topics, which is decided elsewhere.
type authorizer struct {
	rules     []aclRule
	protected map[string]bool
}

// newAuthorizer parses cfg.ACLs (already validated).
func newAuthorizer(cfg Config) *authorizer {
	if !cfg.authOn() {
		return nil
	}
	a := &authorizer{protected: make(map[string]bool)}
	for _, t := range cfg.ProtectedTopics {
		a.protected[t] = true
	}
	for _, acl := range cfg.ACLs {
		r := aclRule{principal: strings.TrimPrefix(acl.Principal, "User:"), cluster: acl.Cluster}
		for _, op := range acl.Operations {
			o, _ := parseOperation(op)
			r.ops = append(r.ops, o)
		}
		for _, t := range acl.Topics {
			p, _ := parsePattern(t)
			r.topics = append(r.topics, p)
		}
		for _, g := range acl.Groups {
			p, _ := parsePattern(g)
			r.groups = append(r.groups, p)
		}
		a.rules = append(a.rules, r)
	}
	return a
}

// allowed is the ACL decision: may principal do op on the resource? A
// network write to a protected (audit) topic, or its creation, needs a
// rule that names the topic itself: "*" and prefixes do not grant it,
// because Sluice writes (and creates) its audit topics in process and only
// a Sluice of a clone set whose genlog.brokers points here has a reason to
// do so over the network.
func (a *authorizer) allowed(principal string, op aclOp, kind resourceKind, name string) bool {
	if a == nil {
		return true
	}
	explicit := kind == resTopic && (op == kmsg.ACLOperationWrite || op == kmsg.ACLOperationCreate) && a.protected[name]
	for _, r := range a.rules {
		if r.principal != "*" && r.principal != principal {
			continue
		}
		granted := false
		for _, o := range r.ops {
			if implies(o, op) {
				granted = true
				break
			}
		}
		if !granted {
			continue
		}
		var pats []pattern
		switch kind {
		case resTopic:
			pats = r.topics
		case resGroup:
			pats = r.groups
		case resCluster:
			if r.cluster {
				return true
			}
			continue
		}
		for _, p := range pats {
			if explicit && (p.any || p.prefix) {
				continue
			}
			if p.matches(name) {
				return true
			}
		}
	}
	return false
}

// allowedAnyTopic reports whether principal may do op on some topic: what
// InitProducerId needs for an idempotent producer (as Kafka 2.8+ accepts
// WRITE on any topic in place of IDEMPOTENT_WRITE on the cluster).
func (a *authorizer) allowedAnyTopic(principal string, op aclOp) bool {
	if a == nil {
		return true
	}
	for _, r := range a.rules {
		if r.principal != "*" && r.principal != principal || len(r.topics) == 0 && !r.cluster {
			continue
		}
		for _, o := range r.ops {
			if implies(o, op) {
				return true
			}
		}
	}
	return false
}
