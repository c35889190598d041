package router

import (
	"testing"
	"time"
)

func TestReadWriteSplitRoute(t *testing.T) {
	c := NewClassifier(100, nil)
	var lx Lexer
	for _, tc := range []struct {
		name string
		sit  Situation
		sql  string
		want Decision
	}{
		{"read", Situation{}, "SELECT * FROM t WHERE id = 1", Decision{To: ToReplica, Reason: ReasonClass}},
		{"write", Situation{}, "UPDATE t SET a = 1", Decision{To: ToPrimary, Reason: ReasonClass}},
		{"read in a transaction", Situation{InTransaction: true}, "SELECT 1 FROM t", Decision{To: ToPrimary, Reason: ReasonTransaction}},
		{"read-only transaction wins over the primary's flags", Situation{InReadOnlyTransaction: true, InTransaction: true},
			"UPDATE t SET a = 1", Decision{To: ToTransaction, Reason: ReasonReadOnlyTransaction}},
		{"pinned", Situation{Pinned: true}, "SELECT 1 FROM t", Decision{To: ToPrimary, Reason: ReasonPinned}},
		{"multi-statement that sets state pins", Situation{}, "SELECT 1; SET @a = 1",
			Decision{To: ToPrimary, Reason: ReasonPinned, Pin: "multi-statement changed session state"}},
		{"multi-statement of reads does not pin", Situation{}, "SELECT 1; SELECT 2", Decision{To: ToPrimary, Reason: ReasonClass}},
		{"temporary table", Situation{UsesTemporary: true}, "SELECT * FROM tmp", Decision{To: ToPrimary, Reason: ReasonTemporaryTable}},
		{"hint primary", Situation{}, "SELECT /* sluice: route=primary */ 1 FROM t", Decision{To: ToPrimary, Reason: ReasonHint}},
		{"hint server", Situation{}, "SELECT /* sluice: route=server:db3 */ 1 FROM t", Decision{To: ToServer, Server: "db3", Reason: ReasonHint}},
		{"hint server unusable: routed as without it", Situation{ServerHintFailed: true},
			"SELECT /* sluice: route=server:db3 */ 1 FROM t", Decision{To: ToReplica, Reason: ReasonClass}},
		{"hint replica for a primary-only read", Situation{}, "SELECT /* sluice: route=replica */ LAST_INSERT_ID()",
			Decision{To: ToReplica, Reason: ReasonClass}},
		{"hint replica never moves a lock", Situation{}, "SELECT /* sluice: route=replica */ * FROM t FOR UPDATE",
			Decision{To: ToPrimary, Reason: ReasonClass}},
		{"hint replica never moves a write", Situation{}, "UPDATE /* sluice: route=replica */ t SET a = 1",
			Decision{To: ToPrimary, Reason: ReasonClass}},
		{"max_lag hint", Situation{}, "SELECT /* sluice: max_lag=2s */ 1 FROM t",
			Decision{To: ToReplica, Reason: ReasonClass, MaxLag: 2 * time.Second}},
		{"diagnostics follow the last statement", Situation{HasLast: true}, "SHOW WARNINGS", Decision{To: ToLast, Reason: ReasonClass}},
		{"diagnostics with no last statement", Situation{}, "SHOW WARNINGS", Decision{To: ToPrimary, Reason: ReasonClass}},
		{"session command", Situation{}, "SET @x = 1", Decision{To: ToPrimary, Reason: ReasonClass}},
	} {
		st := lx.Lex(tc.sql)
		cl, _ := c.Classify(&st, tc.sql)
		if got := (ReadWriteSplit{}).Route(tc.sit, st, cl); got != tc.want {
			t.Errorf("%s: %q routed %+v, want %+v", tc.name, tc.sql, got, tc.want)
		}
	}
}

func TestReadConnRouteRoute(t *testing.T) {
	var lx Lexer
	st := lx.Lex("UPDATE t SET a = 1")
	for _, sit := range []Situation{{}, {InTransaction: true}, {InReadOnlyTransaction: true}, {HasLast: true}} {
		if got := (ReadConnRoute{}).Route(sit, st, nil); got != (Decision{To: ToPrimary, Reason: ReasonConnection}) {
			t.Errorf("%+v: %+v, want the session's one connection", sit, got)
		}
	}
	if (ReadConnRoute{}).Movable() || (ReadConnRoute{}).Classifies() {
		t.Error("readconnroute moves or classifies")
	}
	if !(ReadWriteSplit{}).Movable() || !(ReadWriteSplit{}).Classifies() {
		t.Error("readwritesplit neither moves nor classifies")
	}
	if NewPolicy(TypeReadConnRoute) != (ReadConnRoute{}) || NewPolicy("") != (ReadWriteSplit{}) {
		t.Error("NewPolicy chose the wrong policy")
	}
}

func TestReasonText(t *testing.T) {
	for _, tc := range []struct {
		r      Reason
		detail string
		want   string
	}{
		{ReasonClass, "locking read", "locking read"},
		{ReasonPinned, "too many temporary tables", "too many temporary tables"},
		{ReasonNoUsableReplica, "ignored", "no usable replica"},
		{ReasonRetried, "", "retried after a lost connection"},
	} {
		if got := tc.r.Text(tc.detail); got != tc.want {
			t.Errorf("%d %q: %q, want %q", tc.r, tc.detail, got, tc.want)
		}
	}
}
