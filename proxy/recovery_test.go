package proxy

import "testing"

func TestDecideRecovery(t *testing.T) {
	// free: an autocommit session under readwritesplit, nothing of it
	// living only on its primary connection.
	free := lossFacts{movable: true}
	with := func(f lossFacts, change func(*lossFacts)) lossFacts { change(&f); return f }
	for _, tc := range []struct {
		name string
		f    lossFacts
		want recovery
	}{
		{"replica lost before answering a read", with(free, func(f *lossFacts) { f.conn = lostReplica; f.retryRead = true }), retryOnPrimary},
		{"replica lost before answering, session in a transaction", with(free, func(f *lossFacts) { f.conn = lostReplica; f.inTransaction = true }), retryOnPrimary},
		{"replica lost while relaying rows", with(free, func(f *lossFacts) { f.conn = lostReplica; f.phase = duringAnswer }), endSession},
		{"read-only transaction's replica lost, replayable",
			with(free, func(f *lossFacts) {
				f.conn = lostTransactionReplica
				f.readOnly, f.replayable, f.inTransaction = true, true, true
			}), replayTransaction},
		{"read-only transaction's replica lost, not replayable",
			with(free, func(f *lossFacts) { f.conn = lostTransactionReplica; f.readOnly, f.inTransaction = true, true }), reportTransactionAndEnd},
		{"primary lost in a replayable transaction", with(free, func(f *lossFacts) { f.replayable, f.inTransaction = true, true }), replayTransaction},
		{"primary lost in a transaction that cannot be replayed", with(free, func(f *lossFacts) { f.inTransaction = true }), reportAndEnd},
		{"primary lost in a transaction, answer under way", with(free, func(f *lossFacts) { f.replayable, f.inTransaction, f.phase = true, true, duringAnswer }), endSession},
		{"primary lost before answering a read", with(free, func(f *lossFacts) { f.retryRead = true }), retryOnNewPrimary},
		{"primary lost before answering a read, temporary tables", with(free, func(f *lossFacts) { f.retryRead, f.temporaryTables = true, true }), reportAndEnd},
		{"primary lost before answering a write", free, reportAndReconnect},
		{"readconnroute's connection lost before answering a read", with(free, func(f *lossFacts) { f.movable, f.retryRead = false, true }), reportAndEnd},
		{"primary lost reading the last GTID", with(free, func(f *lossFacts) { f.phase = afterAnswer }), reconnect},
		{"primary lost reading the last GTID, temporary tables", with(free, func(f *lossFacts) { f.phase, f.temporaryTables = afterAnswer, true }), endSession},
		{"primary lost reading session state back", with(free, func(f *lossFacts) { f.phase, f.stateLost = afterAnswer, true }), endSession},
		{"primary lost reading the last GTID, readconnroute", with(free, func(f *lossFacts) { f.phase, f.movable = afterAnswer, false }), endSession},
	} {
		if got := decideRecovery(tc.f); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
