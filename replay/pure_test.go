package replay

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
)

func TestPositionApplied(t *testing.T) {
	p, err := ParsePosition("0-1-100, 2-5-7")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		gtid string
		want bool
	}{
		{"0-1-100", true}, {"0-1-99", true}, {"0-2-50", true}, {"0-1-101", false},
		{"2-5-7", true}, {"2-5-8", false}, {"1-1-1", false}, {"junk", false},
	} {
		if got := p.Applied(c.gtid); got != c.want {
			t.Errorf("%s applied in %v: %v, want %v", c.gtid, p, got, c.want)
		}
	}
	for _, bad := range []string{"0-1", "a-b-c", "0-1-2-3"} {
		if _, err := ParsePosition(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if p, err := ParsePosition(""); err != nil || len(p) != 0 {
		t.Errorf("empty position: %v %v", p, err)
	}
}

func TestReadOnlyVerdict(t *testing.T) {
	c := NewClassifier()
	for _, tc := range []struct {
		query string
		want  string
	}{
		{"SELECT c FROM sbtest1 WHERE id = 1", ""},
		{"SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN 1 AND 100", ""},
		{"SHOW TABLES", ""},
		{"BEGIN", ""},
		{"START TRANSACTION", ""},
		{"COMMIT", ""},
		{"ROLLBACK", ""},
		{"SET SESSION sql_mode = ''", ""},
		{"USE sbtest", ""},
		{"UPDATE sbtest1 SET k = k + 1 WHERE id = 5", ReasonROWrite},
		{"INSERT INTO sbtest1 VALUES (1, 2, 'c', 'p')", ReasonROWrite},
		{"DELETE FROM sbtest1 WHERE id = 5", ReasonROWrite},
		{"CREATE TABLE t (a int)", ReasonROWrite},
		{"CALL p()", ReasonROWrite},
		{"SET GLOBAL max_connections = 10", ReasonROConfig},
		{"SELECT * FROM sbtest1 WHERE id = 1 FOR UPDATE", ReasonROLocks},
		{"PREPARE s FROM 'DELETE FROM t'", ReasonROUnknown},
		{"DO RELEASE_LOCK('x')", ReasonROUnknown},
	} {
		if got := readOnlyVerdict(c.Classify(tc.query).Class); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.query, got, tc.want)
		}
	}
}

func TestStepVerdict(t *testing.T) {
	c := NewClassifier()
	raw := func(s ...string) []json.RawMessage {
		var out []json.RawMessage
		for _, v := range s {
			out = append(out, json.RawMessage(v))
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		rec      Record
		readOnly bool
		want     string
	}{
		{"query", Record{Command: "COM_QUERY", Query: "SELECT 1"}, false, ""},
		{"execute with its params", Record{Command: "COM_STMT_EXECUTE", Query: "SELECT c FROM t WHERE id=?", Params: raw("5")}, false, ""},
		{"execute without params", Record{Command: "COM_STMT_EXECUTE", Query: "SELECT c FROM t WHERE id=?"}, false, ReasonNoParams},
		{"execute with long data", Record{Command: "COM_STMT_EXECUTE", Query: "INSERT INTO t VALUES (?)", Params: raw(`"<long data>"`)}, false, ReasonNoParams},
		{"truncated", Record{Command: "COM_QUERY", Query: "SELECT", QueryTruncated: true}, false, ReasonTruncated},
		{"redacted", Record{Command: "COM_QUERY", Query: "SELECT '<redacted>'", Redacted: []string{"pattern:email"}}, false, ReasonRedacted},
		{"multi", Record{Command: "COM_QUERY", Query: "SELECT 1; SELECT 2"}, false, ReasonMulti},
		{"fetch", Record{Command: "COM_STMT_FETCH"}, false, reasonCommand + "COM_STMT_FETCH"},
		{"init db", Record{Command: "COM_INIT_DB", Query: "app"}, true, ""},
		{"prepare of a write, read-only", Record{Command: "COM_STMT_PREPARE", Query: "DELETE FROM t WHERE id=?"}, true, ReasonROWrite},
		{"prepare of a read, read-only", Record{Command: "COM_STMT_PREPARE", Query: "SELECT c FROM t WHERE id=?"}, true, ""},
		{"execute of a write, read-only", Record{Command: "COM_STMT_EXECUTE", Query: "DELETE FROM t WHERE id=?", Params: raw("1")}, true, ReasonROWrite},
		{"write, read-only", Record{Command: "COM_QUERY", Query: "DELETE FROM t"}, true, ReasonROWrite},
		{"write", Record{Command: "COM_QUERY", Query: "DELETE FROM t"}, false, ""},
	} {
		if got := stepVerdict(&tc.rec, c.Classify(tc.rec.Query), tc.readOnly); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRecordArgs(t *testing.T) {
	r, err := ParseRecord([]byte(`{"type":"query","params":[5,-3,"abc",null,1.50,18446744073709551615]}`))
	if err != nil {
		t.Fatal(err)
	}
	args, ok := r.args()
	want := []any{int64(5), int64(-3), "abc", nil, "1.50", uint64(18446744073709551615)}
	if !ok || !slices.Equal(args, want) {
		t.Fatalf("%#v, want %#v", args, want)
	}
}

// rec is a query record of session s at ms milliseconds, lasting 1ms.
func rec(s uint32, seq uint64, ms int, query string, inTx bool, gtid string) Record {
	return Record{Type: "query", Session: s, Seq: seq, TS: time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond),
		Command: "COM_QUERY", Query: query, InTx: inTx, GTID: gtid, DurationUS: 1000, DB: "app"}
}

func TestBuildPlan(t *testing.T) {
	base := time.Unix(1000, 0)
	quit := func(s uint32, ms int) Record {
		return Record{Type: "quit", Session: s, TS: base.Add(time.Duration(ms) * time.Millisecond)}
	}
	// Session 1: a transaction cut by the window's start, then an
	// autocommit write and a read. Session 2: a transaction, then one the
	// window's end cuts. Session 3: a transaction left open at its quit.
	recs := []Record{
		rec(1, 1, 0, "UPDATE t SET a=1", true, ""),
		rec(1, 2, 10, "COMMIT", false, "0-1-10"),
		rec(1, 3, 20, "INSERT INTO t VALUES (1)", false, "0-1-11"),
		rec(1, 4, 30, "SELECT a FROM t", false, ""),
		rec(2, 1, 5, "BEGIN", true, ""),
		rec(2, 2, 15, "SELECT a FROM t", true, ""),
		rec(2, 3, 25, "DELETE FROM t", true, ""),
		rec(2, 4, 35, "COMMIT", false, "0-1-12"),
		rec(2, 5, 40, "BEGIN", true, ""),
		rec(2, 6, 45, "SELECT 1", true, ""),
		rec(3, 1, 50, "BEGIN", true, ""),
		rec(3, 2, 51, "UPDATE t SET a=2", true, ""),
		quit(3, 52),
	}
	skips := func(p *Plan) map[string][]string {
		out := map[string][]string{}
		for _, sp := range p.Sessions {
			for _, st := range sp.Steps {
				out[sp.Key] = append(out[sp.Key], st.Skip)
			}
		}
		return out
	}
	c := NewClassifier()
	for _, tc := range []struct {
		name string
		opts PlanOptions
		want map[string][]string
		// skipped counts by reason, sessions with nothing to replay included
		skipped map[string]int
	}{
		{"everything", PlanOptions{}, map[string][]string{
			"/1": {ReasonBeforeWindow, ReasonBeforeWindow, "", ""},
			"/2": {"", "", "", "", ReasonAfterWindow, ReasonAfterWindow},
			"/3": {"", ""},
		}, map[string]int{ReasonBeforeWindow: 2, ReasonAfterWindow: 2}},
		{"read-only", PlanOptions{ReadOnly: true}, map[string][]string{
			"/1": {ReasonBeforeWindow, ReasonBeforeWindow, ReasonROWrite, ""},
		}, map[string]int{ReasonBeforeWindow: 2, ReasonAfterWindow: 2, ReasonROWrite: 7}},
		{"from a GTID", PlanOptions{FromGTID: Position{0: 11}}, map[string][]string{
			"/1": {ReasonBeforeWindow, ReasonBeforeWindow, ReasonApplied, ""},
			"/2": {"", "", "", "", ReasonAfterWindow, ReasonAfterWindow},
			"/3": {"", ""},
		}, map[string]int{ReasonBeforeWindow: 2, ReasonAfterWindow: 2, ReasonApplied: 1}},
		{"window", PlanOptions{Since: base.Add(12 * time.Millisecond), Until: base.Add(38 * time.Millisecond)}, map[string][]string{
			"/1": {"", ""},
		}, map[string]int{ReasonBeforeWindow: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := BuildPlan(slices.Clone(recs), tc.opts, c.Classify)
			if err != nil {
				t.Fatal(err)
			}
			got := skips(p)
			for k, w := range tc.want {
				if !slices.Equal(got[k], w) {
					t.Errorf("session %s: %q, want %q", k, got[k], w)
				}
			}
			for k := range got {
				if _, ok := tc.want[k]; !ok {
					t.Errorf("session %s planned: %q", k, got[k])
				}
			}
			if !maps.Equal(p.Skipped, tc.skipped) {
				t.Errorf("skipped %v, want %v", p.Skipped, tc.skipped)
			}
		})
	}
	if _, err := BuildPlan([]Record{rec(1, 1, 0, "SELECT 1", false, "")}, PlanOptions{FromGTID: Position{0: 1}}, c.Classify); err != ErrNoGTIDs {
		t.Fatalf("--from-gtid without gtids: %v", err)
	}
}

// A step runs after the steps of other sessions that ended before it
// began; overlapping ones do not wait for each other.
func TestOrderSteps(t *testing.T) {
	a := rec(1, 1, 0, "SELECT 1", false, "")  // 0-1ms
	b := rec(2, 1, 0, "SELECT 2", false, "")  // 0-1ms, overlaps a
	c := rec(1, 2, 2, "SELECT 3", false, "")  // 2-3ms: after a and b
	d := rec(2, 2, 2, "SELECT 4", false, "")  // 2-3ms
	e := rec(3, 1, 10, "SELECT 5", false, "") // after all
	// f commits at 10.5ms, overlapping e (a read that began before it):
	// it waits for e; g, which began at 11.5ms, after f's commit at 11.1ms (its
	// GTID read lasts to 12ms), waits for f.
	f := rec(4, 1, 10, "COMMIT", false, "0-1-5")
	f.TS, f.DurationUS = f.TS.Add(100*time.Microsecond), 2000
	g := rec(5, 1, 10, "SELECT 6", false, "")
	g.TS = g.TS.Add(1500 * time.Microsecond)
	steps := []*Step{{Rec: &a, read: true}, {Rec: &b, read: true}, {Rec: &c, read: true}, {Rec: &d, read: true},
		{Rec: &e, read: true}, {Rec: &f, commits: true}, {Rec: &g, read: true}}
	sizes := orderSteps(steps)
	if sizes != [lines]int{7, 6, 1} {
		t.Fatalf("lines of %v steps", sizes)
	}
	for i, want := range [][lines]int{{0, 0, 0}, {0, 0, 0}, {2, 0, 0}, {2, 0, 0}, {4, 0, 0}, {4, 5, 0}, {6, 0, 1}} {
		if steps[i].needs != want {
			t.Errorf("step %d needs %v, want %v", i, steps[i].needs, want)
		}
	}
}

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  Record
		got  Outcome
		want []Diff
	}{
		{"same", Record{Rows: 3, RowsChecksum: "ab"}, Outcome{Rows: 3, Checksum: 0xab, Checked: true}, nil},
		{"other rows, same count", Record{Rows: 3, RowsChecksum: "ab"}, Outcome{Rows: 3, Checksum: 0xac, Checked: true}, []Diff{DiffChecksum}},
		{"no checksum recorded", Record{Rows: 3}, Outcome{Rows: 3, Checksum: 0xac, Checked: true}, nil},
		{"fewer rows", Record{Rows: 3, RowsChecksum: "ab"}, Outcome{Rows: 2, Checksum: 0xac, Checked: true}, []Diff{DiffRows, DiffChecksum}},
		{"affected", Record{Affected: 1}, Outcome{Affected: 0}, []Diff{DiffAffected}},
		{"new error", Record{}, Outcome{ErrorCode: 1055}, []Diff{DiffError}},
		{"error gone", Record{ErrorCode: 1062}, Outcome{Affected: 1}, []Diff{DiffError}},
		{"same error", Record{ErrorCode: 1062}, Outcome{ErrorCode: 1062}, nil},
		{"no answer", Record{Rows: 1}, Outcome{NoAnswer: true}, nil},
	} {
		if got := Compare(&tc.rec, &tc.got); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSlowerAndOrder(t *testing.T) {
	th := Thresholds{Factor: 2, MinDelta: time.Millisecond}
	for _, tc := range []struct {
		orig, replay Latency
		want         bool
	}{
		{Latency{P50: 100}, Latency{P50: 150}, false},
		{Latency{P50: 100}, Latency{P50: 900}, false}, // 9x but under 1ms more
		{Latency{P50: 100}, Latency{P50: 5000}, true},
		{Latency{P50: 3000}, Latency{P50: 5000}, false}, // 1ms more but under 2x
		{Latency{P50: 0}, Latency{P50: 2000}, true},
	} {
		if got := slower(tc.orig, tc.replay, th); got != tc.want {
			t.Errorf("%v→%v: %v, want %v", tc.orig, tc.replay, got, tc.want)
		}
	}
	if slower(Latency{P50: 1}, Latency{P50: 1e9}, Thresholds{}) {
		t.Error("factor 0 must never be slower")
	}
	fs := []FingerprintReport{
		{Fingerprint: "fast"},
		{Fingerprint: "differs", Diffs: map[Diff]int{DiffRows: 1}},
		{Fingerprint: "slower a bit", Slower: true, Original: Latency{P50: 100}, Replay: Latency{P50: 2000}},
		{Fingerprint: "slower a lot", Slower: true, Original: Latency{P50: 100}, Replay: Latency{P50: 9000}},
	}
	sortFingerprints(fs)
	var names []string
	for _, f := range fs {
		names = append(names, f.Fingerprint)
	}
	if want := []string{"slower a lot", "slower a bit", "differs", "fast"}; !slices.Equal(names, want) {
		t.Fatalf("order %q, want %q", names, want)
	}
}

func TestPercentile(t *testing.T) {
	s := make([]int64, 100)
	for i := range s {
		s[i] = int64(i + 1)
	}
	for _, tc := range []struct {
		samples []int64
		p       int
		want    int64
	}{
		{s, 50, 50}, {s, 99, 99}, {s, 100, 100}, {[]int64{7}, 50, 7}, {[]int64{7}, 99, 7}, {[]int64{1, 2}, 50, 1}, {[]int64{1, 2}, 99, 2},
	} {
		if got := percentile(tc.samples, tc.p); got != tc.want {
			t.Errorf("p%d of %d samples: %d, want %d", tc.p, len(tc.samples), got, tc.want)
		}
	}
}

// Before the window, only what sets a session's state is kept, for a
// session that has something to replay in the window.
func TestBuildPlanKeepsSessionState(t *testing.T) {
	base := time.Unix(1000, 0)
	recs := []Record{
		rec(1, 1, 0, "SET SESSION sql_mode = 'ANSI'", false, ""),
		rec(1, 2, 1, "SELECT 1", false, ""),
		rec(1, 3, 2, "SET @a = 1", true, ""),
		rec(1, 4, 3, "COMMIT", false, ""),
		rec(1, 5, 4, "USE other", false, ""),
		rec(1, 6, 20, "SELECT 2", false, ""),
		rec(2, 1, 0, "SET NAMES utf8mb4", false, ""),
		rec(2, 2, 21, "UPDATE t SET a = 1", false, ""),
	}
	c := NewClassifier()
	p, err := BuildPlan(recs, PlanOptions{Since: base.Add(10 * time.Millisecond), ReadOnly: true}, c.Classify)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Sessions) != 1 || !p.Start.Equal(base.Add(20*time.Millisecond)) || p.Replayed != 3 || p.lines != [lines]int{1, 1, 0} {
		t.Fatalf("%d sessions from %v, %d steps, lines %v", len(p.Sessions), p.Start, p.Replayed, p.lines)
	}
	if st := p.Sessions[0].Steps[0]; st.order != [lines]int{-1, -1, -1} || st.needs != [lines]int{} {
		t.Fatalf("a state step is on the gate: %v %v", st.order, st.needs)
	}
	var got []string
	for _, st := range p.Sessions[0].Steps {
		got = append(got, fmt.Sprintf("%s %v %q", st.Rec.Query, st.state, st.Skip))
	}
	want := []string{`SET SESSION sql_mode = 'ANSI' true ""`, `USE other true ""`, `SELECT 2 false ""`}
	if !slices.Equal(got, want) {
		t.Fatalf("steps %q, want %q", got, want)
	}
	if !maps.Equal(p.Skipped, map[string]int{ReasonROWrite: 1}) {
		t.Fatalf("skipped %v", p.Skipped)
	}
}
