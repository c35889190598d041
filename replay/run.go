package replay

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Options say how the steps are replayed.
type Options struct {
	// Dial opens a session's connection to the target.
	Dial Dialer
	// Speed scales the recorded pace (2: twice as fast); 0 replays as
	// fast as the order between sessions allows (--speed max).
	Speed float64
	// MaxSessions bounds the sessions replayed at once. Default 256.
	MaxSessions int
	// OrderTimeout bounds how long a step waits for the steps recorded
	// before it. Default 5s.
	OrderTimeout time.Duration
	// Slower says when a fingerprint counts as slower.
	Slower Thresholds
	// Progress, when set, receives a line every ProgressEvery (default 5s).
	Progress      io.Writer
	ProgressEvery time.Duration
}

// runner replays one plan; it owns the session goroutines and the
// progress goroutine, and returns once they have ended.
type runner struct {
	plan  *Plan
	opts  Options
	col   *Collector
	gate  *gate
	start time.Time
	slots chan struct{}
	// replayed, differing and lagUS are for the progress line; maxLagUS
	// for the report.
	replayed, differing, lagUS, maxLagUS atomic.Int64
	limitHit                             atomic.Bool
}

// Run replays plan and returns what it saw, or an error that stopped it
// (the target cannot be reached; ctx ended).
func Run(ctx context.Context, plan *Plan, opts Options) (*Report, error) {
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 256
	}
	if opts.OrderTimeout <= 0 {
		opts.OrderTimeout = 5 * time.Second
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 5 * time.Second
	}
	// The target is reachable with these credentials before any session
	// starts, so that a typo is one error rather than a difference per
	// statement.
	c, err := opts.Dial(ctx, "")
	if err != nil {
		return nil, err
	}
	c.Close()

	r := &runner{plan: plan, opts: opts, col: NewCollector(), gate: newGate(plan.lines), start: time.Now(),
		slots: make(chan struct{}, opts.MaxSessions)}
	for reason, n := range plan.Skipped {
		r.col.Skip(reason, n)
	}
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(stopProgress)
	}()

	var wg sync.WaitGroup
	for _, sp := range plan.Sessions {
		if !r.waitUntil(ctx, sp.first) || !r.acquire(ctx, sp) {
			break
		}
		wg.Go(func() {
			defer func() { <-r.slots }()
			r.session(ctx, sp)
		})
	}
	wg.Wait()
	close(stopProgress)
	<-progressDone

	rep := r.col.Summarize(opts.Slower)
	rep.Started, rep.Finished, rep.Sessions = r.start, time.Now(), len(plan.Sessions)
	rep.MaxLag = (time.Duration(r.maxLagUS.Load()) * time.Microsecond).Round(time.Millisecond).String()
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("replay stopped after %d of %d statements (the report covers those): %w", rep.Replayed, plan.Replayed, err)
	}
	return rep, nil
}

// acquire takes a session slot, saying once when the limit holds sessions
// back.
func (r *runner) acquire(ctx context.Context, sp *SessionPlan) bool {
	select {
	case r.slots <- struct{}{}:
		return true
	default:
	}
	if r.opts.Progress != nil && !r.limitHit.Swap(true) {
		fmt.Fprintf(r.opts.Progress, "replay: --max-sessions %d reached: session %s and later ones wait for a session to end, so the replay falls behind schedule (raise --max-sessions to keep the recorded concurrency)\n", r.opts.MaxSessions, sp.Key)
	}
	select {
	case r.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// due is when a step recorded at ts runs.
func (r *runner) due(ts time.Time) time.Time {
	if r.opts.Speed <= 0 {
		return r.start
	}
	return r.start.Add(time.Duration(float64(ts.Sub(r.plan.Start)) / r.opts.Speed))
}

// waitUntil waits for the time a step recorded at ts is due, and notes the
// lag when it is late.
func (r *runner) waitUntil(ctx context.Context, ts time.Time) bool {
	at := r.due(ts)
	if d := time.Until(at); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
	if r.opts.Speed > 0 {
		lag := time.Since(at).Microseconds()
		r.lagUS.Store(lag)
		if lag > r.maxLagUS.Load() {
			r.maxLagUS.Store(lag)
		}
	}
	return ctx.Err() == nil
}

// session replays one session's steps in order on its own connection.
func (r *runner) session(ctx context.Context, sp *SessionPlan) {
	c := &sessionConn{}
	// Ctrl-C ends a statement waiting on the target (a lock) too.
	stop := context.AfterFunc(ctx, c.close)
	defer stop()
	defer c.close()
	db := sp.DB
	for i := range sp.Steps {
		st := &sp.Steps[i]
		if st.Skip != "" {
			continue
		}
		if ctx.Err() != nil || (!st.state && !r.waitUntil(ctx, st.Rec.TS)) {
			r.gate.finish(st.order)
			continue
		}
		if !r.gate.wait(ctx, st.needs, r.opts.OrderTimeout) && ctx.Err() == nil {
			r.col.OrderTimeout()
		}
		conn, err := c.get(ctx, r.opts.Dial, db)
		out := Outcome{ErrorCode: crServerLost}
		if err != nil {
			out.Error = err.Error()
		} else {
			out = execute(conn, st.Rec)
		}
		r.gate.finish(st.order)
		if ctx.Err() != nil {
			continue // cut short: not an answer to compare
		}
		if st.Rec.Command == "COM_INIT_DB" && out.ErrorCode == 0 {
			db = st.Rec.Query
		}
		if len(r.col.Add(st.Rec, &out)) > 0 {
			r.differing.Add(1)
		}
		r.replayed.Add(1)
	}
}

// sessionConn is a session's connection, opened again when lost; close
// may come from another goroutine (the context ending).
type sessionConn struct {
	mu     sync.Mutex
	conn   Conn
	closed bool
}

// get returns the open connection, dialling one in db if there is none or
// it was lost.
func (c *sessionConn) get(ctx context.Context, dial Dialer, db string) (Conn, error) {
	c.mu.Lock()
	old := c.conn
	if old != nil && !old.Broken() {
		c.mu.Unlock()
		return old, nil
	}
	c.conn = nil
	c.mu.Unlock()
	if old != nil {
		old.Close()
	}
	conn, err := dial(ctx, db)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close()
		return nil, ctx.Err()
	}
	c.conn = conn
	return conn, nil
}

// close closes the connection for good.
func (c *sessionConn) close() {
	c.mu.Lock()
	conn := c.conn
	c.conn, c.closed = nil, true
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// execute runs one recorded command on c.
func execute(c Conn, rec *Record) Outcome {
	switch rec.Command {
	case "COM_QUERY":
		return c.Query(rec.Query)
	case "COM_STMT_PREPARE":
		return c.Prepare(rec.Query)
	case "COM_STMT_EXECUTE":
		args, _ := rec.args()
		return c.Execute(rec.Query, args)
	case "COM_STMT_CLOSE":
		c.CloseStmt(rec.Query)
		return Outcome{NoAnswer: true}
	case "COM_INIT_DB":
		return c.UseDB(rec.Query)
	case "COM_PING":
		return c.Ping()
	}
	return Outcome{NoAnswer: true}
}

// progress writes a line every ProgressEvery until stop is closed.
func (r *runner) progress(stop <-chan struct{}) {
	if r.opts.Progress == nil {
		return
	}
	t := time.NewTicker(r.opts.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			lag := ""
			if r.opts.Speed > 0 {
				lag = fmt.Sprintf(", %s behind schedule", (time.Duration(r.lagUS.Load()) * time.Microsecond).Round(time.Millisecond))
			}
			fmt.Fprintf(r.opts.Progress, "replay: %d/%d statements replayed, %d differ%s\n", r.replayed.Load(), r.plan.Replayed, r.differing.Load(), lag)
		}
	}
}
