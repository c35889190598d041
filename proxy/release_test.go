package proxy

import "testing"

func TestDecideRelease(t *testing.T) {
	multiplex := func(f holdFacts) holdFacts { f.mode = PoolMultiplex; return f }
	idleMode := func(f holdFacts) holdFacts { f.mode = PoolIdle; return f }
	for _, tc := range []struct {
		name string
		f    holdFacts
		want holdReason
	}{
		{"pool off keeps everything", holdFacts{mode: PoolOff}, holdPoolOff},
		{"pool off, even idle", holdFacts{mode: PoolOff, idle: true}, holdPoolOff},
		{"multiplex, nothing held", multiplex(holdFacts{}), released},
		{"open transaction", multiplex(holdFacts{transaction: true}), holdTransaction},
		{"transaction outlasts idle", idleMode(holdFacts{transaction: true, idle: true}), holdTransaction},
		{"temporary tables", multiplex(holdFacts{temporaryTables: true}), holdTemporaryTables},
		{"LOCK TABLES", multiplex(holdFacts{tableLocks: true}), holdTableLocks},
		{"GET_LOCK", multiplex(holdFacts{kept: "named lock"}), holdKept},
		{"SQL PREPARE", idleMode(holdFacts{kept: "SQL prepared statement", idle: true}), holdKept},
		{"open cursor", multiplex(holdFacts{cursor: true}), holdCursor},
		{"long data before its execute", multiplex(holdFacts{longData: true}), holdLongData},
		{"pinned state", multiplex(holdFacts{pinned: true}), holdPinned},
		{"readconnroute's one connection", multiplex(holdFacts{ownConnection: true, idle: true}), holdOwnConnection},
		{"warnings kept for the next command", multiplex(holdFacts{previous: true}), holdPrevious},
		{"previous statement's answer, until idle", multiplex(holdFacts{previous: true, idle: true}), released},
		{"idle mode before idle_time", idleMode(holdFacts{}), holdNotIdle},
		{"idle mode after idle_time", idleMode(holdFacts{idle: true}), released},
		{"idle mode, previous statement, idle", idleMode(holdFacts{previous: true, idle: true}), released},
		{"transaction first among reasons", multiplex(holdFacts{transaction: true, temporaryTables: true, cursor: true}), holdTransaction},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideRelease(tc.f); got != tc.want {
				t.Errorf("decideRelease(%+v) = %v, want %v", tc.f, got, tc.want)
			}
		})
	}
}
