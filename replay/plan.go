package replay

import (
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/sluice-proxy/sluice/router"
)

// PlanOptions choose the records a replay replays.
type PlanOptions struct {
	// Since and Until bound the window by the records' ts; zero: open.
	Since, Until time.Time
	// FromGTID, when set, is the target's GTID position: what committed
	// at or before it is there already.
	FromGTID Position
	// ReadOnly replays only what cannot change data.
	ReadOnly bool
}

// A record before Since is replayed only when it sets the session's state
// (SET, USE, a prepare) outside a transaction, at the start of a session
// that has steps in the window: its window starts in the state it had.

// Step is one recorded command of a session.
type Step struct {
	Rec *Record
	// Skip says why the step is not replayed; "" replays it.
	Skip string
	// state: before the window, replayed for the session's state only.
	state bool
	// read: a read, whose snapshot a commit must not overtake; commits:
	// a commit or a write that committed.
	read, commits bool
	// order is the step's place on each line of the gate (-1: not on
	// it); needs how many steps of each line it waits for.
	order, needs [lines]int
}

// SessionPlan is one recorded session's steps, in order.
type SessionPlan struct {
	Key string
	// DB is the schema the session starts in.
	DB    string
	Steps []Step
	// Quit: the session ended within the window.
	Quit bool
	// first is the recorded start of its first replayed step.
	first time.Time
}

// Plan is what a replay replays.
type Plan struct {
	// Start is the recorded start of the first step replayed.
	Start time.Time
	// Sessions with a step to replay, by their first step.
	Sessions []*SessionPlan
	// Replayed counts the steps to replay; Skipped the others, by reason.
	Replayed int
	Skipped  map[string]int
	// lines are the sizes of the gate's lines.
	lines [lines]int
}

// ErrNoGTIDs: --from-gtid over a trail whose records carry no gtid.
var ErrNoGTIDs = errors.New("--from-gtid: no record in the window carries a gtid; capture with genlog.gtid: true, or use --since")

// BuildPlan orders records into sessions and decides, transaction by
// transaction, what is replayed. classify tells what a statement is.
func BuildPlan(recs []Record, opts PlanOptions, classify func(string) Statement) (*Plan, error) {
	bySession := map[string]*SessionPlan{}
	var order []*SessionPlan
	var cutoff time.Time
	gtids := false
	for i := range recs {
		r := &recs[i]
		before := !opts.Since.IsZero() && r.TS.Before(opts.Since)
		if !opts.Until.IsZero() && !r.TS.Before(opts.Until) {
			continue
		}
		if before && r.Type != "connect" && (r.Type != "query" || r.InTx || !setsState(r, classify)) {
			continue
		}
		sp := bySession[r.sessionKey()]
		if sp == nil {
			sp = &SessionPlan{Key: r.sessionKey(), DB: r.DB}
			bySession[sp.Key] = sp
			order = append(order, sp)
		}
		switch r.Type {
		case "connect":
			if len(sp.Steps) == 0 {
				sp.DB = r.DB
			}
		case "quit":
			sp.Quit = true
		case "query":
			if len(sp.Steps) == 0 && sp.DB == "" {
				sp.DB = r.DB
			}
			sp.Steps = append(sp.Steps, Step{Rec: r, state: before})
			if r.GTID != "" {
				gtids = true
				if opts.FromGTID != nil && opts.FromGTID.Applied(r.GTID) && r.end().After(cutoff) {
					cutoff = r.end()
				}
			}
		}
	}
	if opts.FromGTID != nil && !gtids {
		return nil, ErrNoGTIDs
	}
	p := &Plan{Skipped: map[string]int{}}
	var replayed []*Step
	for _, sp := range order {
		slices.SortStableFunc(sp.Steps, func(a, b Step) int { return compareSeq(a.Rec.Seq, b.Rec.Seq) })
		planSession(sp, opts, cutoff, classify)
		var mine []*Step
		states := 0
		for i := range sp.Steps {
			st := &sp.Steps[i]
			switch {
			case st.Skip != "":
			case st.state:
				// Run first when the session starts, off the gate's
				// lines: no other session waits for them.
				st.order = [lines]int{-1, -1, -1}
				states++
			default:
				if sp.first.IsZero() {
					sp.first = st.Rec.TS
				}
				mine = append(mine, st)
			}
		}
		for i := range sp.Steps {
			// With nothing to replay in the window, no state to set either.
			if st := &sp.Steps[i]; st.Skip != "" && (!st.state || !sp.first.IsZero()) {
				p.Skipped[st.Skip]++
			}
		}
		if sp.first.IsZero() {
			continue
		}
		p.Sessions = append(p.Sessions, sp)
		p.Replayed += states
		replayed = append(replayed, mine...)
	}
	sort.SliceStable(p.Sessions, func(i, j int) bool { return p.Sessions[i].first.Before(p.Sessions[j].first) })
	if len(p.Sessions) > 0 {
		p.Start = p.Sessions[0].first
	}
	p.Replayed += len(replayed)
	p.lines = orderSteps(replayed)
	return p, nil
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// planSession marks the steps of one session that are not replayed, a
// transaction (or an autocommit statement) at a time.
func planSession(sp *SessionPlan, opts PlanOptions, cutoff time.Time, classify func(string) Statement) {
	steps := sp.Steps
	for len(steps) > 0 && steps[0].state {
		steps[0].Skip = stepVerdict(steps[0].Rec, classify(steps[0].Rec.Query), opts.ReadOnly)
		steps = steps[1:]
	}
	skip := func(from, to int, reason string) {
		for k := from; k <= to; k++ {
			steps[k].Skip = reason
		}
	}
	i := 0
	if len(steps) > 0 && steps[0].Rec.InTx && !begins(steps[0].Rec, classify(steps[0].Rec.Query)) {
		// The window opens inside a transaction: up to its end.
		for i < len(steps) && steps[i].Rec.InTx {
			i++
		}
		skip(0, min(i, len(steps)-1), ReasonBeforeWindow)
		i++
	}
	for i < len(steps) {
		j := i
		for j < len(steps)-1 && steps[j].Rec.InTx {
			j++
		}
		skip(i, j, unitVerdict(steps[i:j+1], sp.Quit, opts, cutoff, classify))
		i = j + 1
	}
}

// setsState reports a statement that sets the session's state: SET of
// session variables, USE, a prepare.
func setsState(r *Record, classify func(string) Statement) bool {
	switch r.Command {
	case "COM_INIT_DB", "COM_STMT_PREPARE":
		return true
	case "COM_QUERY":
		st := classify(r.Query)
		return st.Class != nil && st.Class.Route == router.RouteSession
	}
	return false
}

// unitVerdict says why a transaction (or one autocommit statement) is not
// replayed, or "".
func unitVerdict(unit []Step, quit bool, opts PlanOptions, cutoff time.Time, classify func(string) Statement) string {
	if last := unit[len(unit)-1].Rec; last.InTx && !quit {
		return ReasonAfterWindow
	}
	if opts.FromGTID != nil {
		unapplied := false
		for _, s := range unit {
			if g := s.Rec.GTID; g != "" {
				if opts.FromGTID.Applied(g) {
					return ReasonApplied
				}
				unapplied = true
			}
		}
		if !unapplied && unit[0].Rec.TS.Before(cutoff) {
			return ReasonBeforeGTID
		}
	}
	for i := range unit {
		s := &unit[i]
		var st Statement
		switch s.Rec.Command {
		case "COM_QUERY", "COM_STMT_EXECUTE":
			st = classify(s.Rec.Query)
			s.read, s.commits = isRead(st), s.Rec.GTID != "" || isCommit(st)
		case "COM_STMT_PREPARE":
			st = classify(s.Rec.Query)
		}
		if why := stepVerdict(s.Rec, st, opts.ReadOnly); why != "" {
			return why
		}
	}
	return ""
}

// effect is when a step took effect for other sessions in the capture:
// its end, but for a write that recorded its GTID the middle (Sluice read
// the GTID in a second round trip after the commit).
func effect(r *Record) time.Time {
	if r.GTID != "" {
		return r.TS.Add(time.Duration(r.DurationUS) * time.Microsecond / 2)
	}
	return r.end()
}

// orderSteps places replayed steps on the gate's lines and counts, for
// each, the steps it waits for: those that took effect before it started;
// for a commit, also the reads that started before it, and for a read the
// commits that did.
func orderSteps(steps []*Step) (sizes [lines]int) {
	byEffect := slices.Clone(steps)
	slices.SortStableFunc(byEffect, func(a, b *Step) int { return effect(a.Rec).Compare(effect(b.Rec)) })
	effects := make([]time.Time, len(byEffect))
	for i, s := range byEffect {
		s.order = [lines]int{i, -1, -1}
		effects[i] = effect(s.Rec)
	}
	reads := byKey(steps, byReadStart, func(s *Step) bool { return s.read }, func(r *Record) time.Time { return r.TS })
	commits := byKey(steps, byCommitStart, func(s *Step) bool { return s.commits }, func(r *Record) time.Time { return r.TS })
	before := func(ts []time.Time, t time.Time) int {
		return sort.Search(len(ts), func(i int) bool { return !ts[i].Before(t) })
	}
	for _, s := range steps {
		s.needs[byEnd] = before(effects, s.Rec.TS)
		if s.commits {
			s.needs[byReadStart] = before(reads, s.Rec.TS)
		}
		if s.read {
			s.needs[byCommitStart] = before(commits, s.Rec.TS)
		}
	}
	return [lines]int{len(byEffect), len(reads), len(commits)}
}

// byKey places the steps that are in a line on it by key, and returns
// their keys.
func byKey(steps []*Step, line int, in func(*Step) bool, key func(*Record) time.Time) []time.Time {
	var on []*Step
	for _, s := range steps {
		if in(s) {
			on = append(on, s)
		}
	}
	slices.SortStableFunc(on, func(a, b *Step) int { return key(a.Rec).Compare(key(b.Rec)) })
	keys := make([]time.Time, len(on))
	for i, s := range on {
		s.order[line] = i
		keys[i] = key(s.Rec)
	}
	return keys
}
