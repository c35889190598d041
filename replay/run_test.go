package replay

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer answers replayed statements from a table and logs the order
// in which they ran; a statement listed in slow takes that long.
type fakeServer struct {
	mu      sync.Mutex
	log     []string
	answers map[string]Outcome
	slow    map[string]time.Duration
	dials   []string
}

func (f *fakeServer) dial(ctx context.Context, db string) (Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dials = append(f.dials, db)
	return &fakeConn{f: f}, nil
}

type fakeConn struct{ f *fakeServer }

func (c *fakeConn) run(q string) Outcome {
	c.f.mu.Lock()
	c.f.log = append(c.f.log, "start "+q)
	d := c.f.slow[q]
	c.f.mu.Unlock()
	time.Sleep(d) // the server's time for it
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.log = append(c.f.log, "end "+q)
	return c.f.answers[q]
}
func (c *fakeConn) Query(q string) Outcome               { return c.run(q) }
func (c *fakeConn) Prepare(q string) Outcome             { return c.run("prepare " + q) }
func (c *fakeConn) Execute(q string, args []any) Outcome { return c.run(q) }
func (c *fakeConn) CloseStmt(q string)                   {}
func (c *fakeConn) UseDB(db string) Outcome              { return c.run("use " + db) }
func (c *fakeConn) Ping() Outcome                        { return Outcome{} }
func (c *fakeConn) Broken() bool                         { return false }
func (c *fakeConn) Close()                               {}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// A read that started after another session's commit ended waits for the
// replayed commit, even when the commit is slow on the target.
func TestRunKeepsTheRecordedOrderBetweenSessions(t *testing.T) {
	recs := []Record{
		rec(1, 1, 0, "INSERT INTO t VALUES (1)", false, "0-1-1"),
		rec(2, 1, 5, "SELECT a FROM t", false, ""),
	}
	recs[1].Rows = 1
	f := &fakeServer{answers: map[string]Outcome{"SELECT a FROM t": {Rows: 1}, "INSERT INTO t VALUES (1)": {Affected: 0}},
		slow: map[string]time.Duration{"INSERT INTO t VALUES (1)": 50 * time.Millisecond}}
	p, err := BuildPlan(recs, PlanOptions{}, NewClassifier().Classify)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctxT(t, 10*time.Second), p, Options{Dial: f.dial, OrderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"start INSERT INTO t VALUES (1)", "end INSERT INTO t VALUES (1)", "start SELECT a FROM t", "end SELECT a FROM t"}
	if !slices.Equal(f.log, want) {
		t.Fatalf("ran %q, want %q", f.log, want)
	}
	if rep.Replayed != 2 || rep.Differing != 0 || rep.OrderTimeouts != 0 || rep.Differs() {
		t.Fatalf("report %+v", rep)
	}
	if !slices.Equal(f.dials, []string{"", "app", "app"}) {
		t.Fatalf("dialled schemas %q: want the check, then each session in its db", f.dials)
	}
}

// Differences are counted by kind and fingerprint with an example; skipped
// steps by reason; the limit on sessions says so once.
func TestRunReportsDifferencesAndLimits(t *testing.T) {
	recs := []Record{
		rec(1, 1, 0, "SELECT a FROM t", false, ""),
		rec(2, 1, 0, "UPDATE t SET a = 2", false, "0-1-2"),
		rec(3, 1, 0, "SELECT b FROM t", false, ""),
		rec(3, 2, 1, "SELECT 1; SELECT 2", false, ""),
	}
	recs[0].Fingerprint, recs[0].Rows, recs[0].RowsChecksum = "SELECT a FROM t", 2, "aa"
	recs[1].Fingerprint, recs[1].Affected = "UPDATE t SET a = ?", 1
	recs[2].Fingerprint = "SELECT b FROM t"
	f := &fakeServer{answers: map[string]Outcome{
		"SELECT a FROM t":    {Rows: 2, Checksum: 0xab, Checked: true},
		"UPDATE t SET a = 2": {ErrorCode: 1290},
		"SELECT b FROM t":    {},
	}}
	p, err := BuildPlan(recs, PlanOptions{}, NewClassifier().Classify)
	if err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	var mu sync.Mutex
	rep, err := Run(ctxT(t, 10*time.Second), p, Options{Dial: f.dial, MaxSessions: 1, Progress: writerFunc(func(b []byte) {
		mu.Lock()
		defer mu.Unlock()
		progress.Write(b)
	})})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 3 || rep.Differing != 2 || rep.ByDiff[DiffChecksum] != 1 || rep.ByDiff[DiffError] != 1 || rep.Skipped[ReasonMulti] != 1 || !rep.Differs() {
		t.Fatalf("report %+v", rep)
	}
	for _, fp := range rep.Fingerprints {
		switch fp.Fingerprint {
		case "UPDATE t SET a = ?":
			if len(fp.ErrorChanges) != 1 || fp.ErrorChanges[0] != (ErrorChange{From: 0, To: 1290, Count: 1}) || fp.Example == nil || fp.Example.Replay.ErrorCode != 1290 {
				t.Errorf("update: %+v", fp)
			}
		case "SELECT a FROM t":
			if fp.Example == nil || fp.Example.Original.Checksum != "aa" || fp.Example.Replay.Checksum != "ab" {
				t.Errorf("select: %+v", fp)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(progress.String(), "--max-sessions 1 reached"); n != 1 {
		t.Fatalf("the limit was told %d times:\n%s", n, progress.String())
	}
	var table strings.Builder
	if err := rep.WriteTable(&table, 10); err != nil || !strings.Contains(table.String(), "0→1290 ×1") || !strings.Contains(table.String(), "skipped 1: "+ReasonMulti) {
		t.Fatalf("table (%v):\n%s", err, table.String())
	}
	var page strings.Builder
	if err := rep.WriteHTML(&page); err != nil || !strings.Contains(page.String(), "UPDATE t SET a = ?") {
		t.Fatalf("html (%v):\n%s", err, page.String())
	}
}

// The recorded pace, scaled: a step recorded 200ms after the first runs no
// sooner than 100ms after the start at --speed 2.
func TestRunKeepsThePace(t *testing.T) {
	recs := []Record{rec(1, 1, 0, "SELECT 1", false, ""), rec(2, 1, 200, "SELECT 2", false, "")}
	f := &fakeServer{answers: map[string]Outcome{}}
	p, err := BuildPlan(recs, PlanOptions{}, NewClassifier().Classify)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := Run(ctxT(t, 10*time.Second), p, Options{Dial: f.dial, Speed: 2}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("replayed in %v, want at least 100ms", d)
	}
	if len(f.log) != 4 {
		t.Fatalf("ran %q", f.log)
	}
}

type writerFunc func([]byte)

func (w writerFunc) Write(b []byte) (int, error) { w(b); return len(b), nil }

// The gate opens a wait once every step before it on each line is done,
// in whatever order they finish, and gives up after the timeout.
func TestGate(t *testing.T) {
	g := newGate([lines]int{3, 1, 0})
	ctx := ctxT(t, 10*time.Second)
	if !g.wait(ctx, [lines]int{0, 0, 0}, time.Millisecond) {
		t.Fatal("nothing to wait for, yet it waited")
	}
	g.finish([lines]int{1, -1, -1})
	if g.wait(ctx, [lines]int{1, 0, 0}, 10*time.Millisecond) {
		t.Fatal("step 0 is not done, yet the wait for it returned")
	}
	done := make(chan bool)
	go func() { done <- g.wait(ctx, [lines]int{2, 1, 0}, 5*time.Second) }()
	g.finish([lines]int{0, 0, -1})
	if !<-done {
		t.Fatal("steps 0 and 1 done, read 0 done, yet the wait gave up")
	}
	if g.lines[byEnd].prefix != 2 || g.lines[byReadStart].prefix != 1 {
		t.Fatalf("prefixes %d %d", g.lines[byEnd].prefix, g.lines[byReadStart].prefix)
	}
}

// A session's state from before the window is set first, without holding
// up another session that starts earlier in the window.
func TestRunSetsStateFirst(t *testing.T) {
	recs := []Record{
		rec(1, 1, 0, "SET SESSION sql_mode = 'ANSI'", false, ""),
		rec(2, 1, 100, "SELECT 1", false, ""),
		rec(1, 2, 150, "SELECT 2", false, ""),
	}
	f := &fakeServer{answers: map[string]Outcome{}}
	p, err := BuildPlan(recs, PlanOptions{Since: time.Unix(1000, 0).Add(50 * time.Millisecond)}, NewClassifier().Classify)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctxT(t, 10*time.Second), p, Options{Dial: f.dial, Speed: 1, OrderTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"start SELECT 1", "end SELECT 1", "start SET SESSION sql_mode = 'ANSI'", "end SET SESSION sql_mode = 'ANSI'", "start SELECT 2", "end SELECT 2"}
	if !slices.Equal(f.log, want) || rep.OrderTimeouts != 0 || rep.Replayed != 3 {
		t.Fatalf("ran %q (%d order timeouts, %d replayed), want %q", f.log, rep.OrderTimeouts, rep.Replayed, want)
	}
}

// blockingConn's statements wait until the connection is closed, as one
// waiting on a lock does.
type blockingConn struct {
	started chan struct{}
	closed  chan struct{}
	once    sync.Once
}

func (c *blockingConn) run() Outcome {
	close(c.started)
	<-c.closed
	return Outcome{ErrorCode: crServerLost}
}
func (c *blockingConn) Query(string) Outcome          { return c.run() }
func (c *blockingConn) Prepare(string) Outcome        { return c.run() }
func (c *blockingConn) Execute(string, []any) Outcome { return c.run() }
func (c *blockingConn) CloseStmt(string)              {}
func (c *blockingConn) UseDB(string) Outcome          { return c.run() }
func (c *blockingConn) Ping() Outcome                 { return Outcome{} }
func (c *blockingConn) Broken() bool                  { return false }
func (c *blockingConn) Close()                        { c.once.Do(func() { close(c.closed) }) }

// Ending the context ends a replay whose statement waits on the target,
// and reports what ran.
func TestRunStopsWhenTheContextEnds(t *testing.T) {
	p, err := BuildPlan([]Record{rec(1, 1, 0, "SELECT SLEEP(3600)", false, "")}, PlanOptions{}, NewClassifier().Classify)
	if err != nil {
		t.Fatal(err)
	}
	c := &blockingConn{started: make(chan struct{}), closed: make(chan struct{})}
	dials := 0
	dial := func(ctx context.Context, db string) (Conn, error) {
		if dials++; dials == 1 {
			return &fakeConn{f: &fakeServer{}}, nil // the check
		}
		return c, nil
	}
	ctx, cancel := context.WithCancel(ctxT(t, 10*time.Second))
	done := make(chan error)
	go func() {
		_, err := Run(ctx, p, Options{Dial: dial})
		done <- err
	}()
	<-c.started
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "replay stopped after 0 of 1 statements") {
		t.Fatalf("Run: %v", err)
	}
}
