package replay

import (
	"context"
	"sync"
	"time"
)

// The gate keeps the recorded order between sessions along two lines:
//   - byEnd: every replayed step, by when it took effect in the capture
//     (its end; a commit's GTID round trip left out): a step waits until
//     every step that took effect before it started has been replayed;
//   - byReadStart: reads, by start: a commit waits until the reads that
//     started before it have been replayed, so that a read does not see a
//     commit it did not see in the capture (its snapshot came first);
//   - byCommitStart: commits, by start: a read waits until the commits
//     that started before it have been replayed, so that it sees them.
//
// A read and a commit that overlapped in the capture are ordered by start,
// which is a guess: the commit may have taken effect after the read took
// its snapshot (within the commit's own time on the server), so two
// transactions on the same rows within microseconds of each other may
// replay in the other order and report a checksum difference.
//
// Every wait points at a step that started earlier, so the gate alone
// cannot deadlock; a lock the replay took in another order could, so a
// wait longer than the timeout gives up (counted).
const (
	byEnd = iota
	byReadStart
	byCommitStart
	lines
)

type gate struct {
	mu    sync.Mutex
	lines [lines]line
	// moved is closed, and replaced, whenever a prefix grows.
	moved chan struct{}
}

// line is one order of steps: which are replayed, and how many from the
// first are all replayed (prefix).
type line struct {
	done   []bool
	prefix int
}

func newGate(sizes [lines]int) *gate {
	g := &gate{moved: make(chan struct{})}
	for i, n := range sizes {
		g.lines[i].done = make([]bool, n)
	}
	return g
}

// wait returns when, on each line, the first needs steps are replayed
// (true), or after timeout (false), or when ctx ends.
func (g *gate) wait(ctx context.Context, needs [lines]int, timeout time.Duration) bool {
	var deadline <-chan time.Time
	for {
		g.mu.Lock()
		ok, moved := true, g.moved
		for i := range g.lines {
			ok = ok && g.lines[i].prefix >= needs[i]
		}
		g.mu.Unlock()
		if ok {
			return true
		}
		if deadline == nil {
			t := time.NewTimer(timeout)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-moved:
		case <-deadline:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// finish marks a step replayed at its place on each line (-1: not on it).
func (g *gate) finish(order [lines]int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	grew := false
	for i := range g.lines {
		l := &g.lines[i]
		if order[i] < 0 {
			continue
		}
		l.done[order[i]] = true
		start := l.prefix
		for l.prefix < len(l.done) && l.done[l.prefix] {
			l.prefix++
		}
		grew = grew || l.prefix != start
	}
	if grew {
		close(g.moved)
		g.moved = make(chan struct{})
	}
}
