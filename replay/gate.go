package replay

import (
	"context"
	"sync"
	"time"
)

// gate keeps the recorded order between sessions: a step waits until every
// step that ended before it started (in the capture) has been replayed. A
// wait longer than timeout gives up (counted): a lock the replay took in
// another order must not stall it for good.
type gate struct {
	mu   sync.Mutex
	done []bool
	// prefix counts steps 0..prefix-1 (by recorded end) replayed.
	prefix int
	// moved is closed, and replaced, whenever prefix grows.
	moved chan struct{}
}

func newGate(steps int) *gate {
	return &gate{done: make([]bool, steps), moved: make(chan struct{})}
}

// wait returns when the first needs steps are replayed (true), or after
// timeout (false), or when ctx ends.
func (g *gate) wait(ctx context.Context, needs int, timeout time.Duration) bool {
	var deadline <-chan time.Time
	for {
		g.mu.Lock()
		ok, moved := g.prefix >= needs, g.moved
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

// finish marks the step of that order replayed.
func (g *gate) finish(order int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done[order] = true
	start := g.prefix
	for g.prefix < len(g.done) && g.done[g.prefix] {
		g.prefix++
	}
	if g.prefix != start {
		close(g.moved)
		g.moved = make(chan struct{})
	}
}
