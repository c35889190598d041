package replay

import (
	"errors"
	"slices"
	"sort"
	"time"
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

// Step is one recorded command of a session.
type Step struct {
	Rec *Record
	// Skip says why the step is not replayed; "" replays it.
	Skip string
	// order is the step's place among replayed steps by recorded end;
	// needs is how many of them ended before this one started: the gate
	// lets it run once they have been replayed.
	order, needs int
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
		if (!opts.Since.IsZero() && r.TS.Before(opts.Since)) || (!opts.Until.IsZero() && !r.TS.Before(opts.Until)) {
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
			sp.Steps = append(sp.Steps, Step{Rec: r})
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
		for i := range sp.Steps {
			st := &sp.Steps[i]
			if st.Skip != "" {
				p.Skipped[st.Skip]++
				continue
			}
			if sp.first.IsZero() {
				sp.first = st.Rec.TS
			}
			replayed = append(replayed, st)
		}
		if !sp.first.IsZero() {
			p.Sessions = append(p.Sessions, sp)
		}
	}
	sort.SliceStable(p.Sessions, func(i, j int) bool { return p.Sessions[i].first.Before(p.Sessions[j].first) })
	if len(p.Sessions) > 0 {
		p.Start = p.Sessions[0].first
	}
	p.Replayed = len(replayed)
	orderSteps(replayed)
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
	for _, s := range unit {
		var st Statement
		if s.Rec.Command == "COM_QUERY" || s.Rec.Command == "COM_STMT_PREPARE" || s.Rec.Command == "COM_STMT_EXECUTE" {
			st = classify(s.Rec.Query)
		}
		if why := stepVerdict(s.Rec, st, opts.ReadOnly); why != "" {
			return why
		}
	}
	return ""
}

// orderSteps numbers replayed steps by recorded end and counts, for each,
// the steps that ended before it started: it runs after them, so that what
// one session saw of another's commits is what it saw in the capture.
func orderSteps(steps []*Step) {
	byEnd := slices.Clone(steps)
	slices.SortStableFunc(byEnd, func(a, b *Step) int { return a.Rec.end().Compare(b.Rec.end()) })
	ends := make([]time.Time, len(byEnd))
	for i, s := range byEnd {
		s.order = i
		ends[i] = s.Rec.end()
	}
	for _, s := range steps {
		s.needs = sort.Search(len(ends), func(i int) bool { return !ends[i].Before(s.Rec.TS) })
	}
}
