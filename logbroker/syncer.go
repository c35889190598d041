package logbroker

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"
)

// syncRound is one group commit: every segment dirtied before the round was
// taken by the syncer is fsynced, then done is closed.
type syncRound struct {
	segments map[*segment]struct{}
	done     chan struct{}
	err      error
}

// syncer implements the fsync policies. Under "always", appends register
// their segment with the current round and wait for it; the syncer goroutine
// takes the round and fsyncs everything in it while new appends gather in
// the next round, so N concurrent produce requests cost one fsync, not N.
type syncer struct {
	policy   string
	interval time.Duration

	mu   sync.Mutex
	cur  *syncRound
	kick chan struct{} // capacity 1: "a round has work"
}

func newSyncer(policy string, interval time.Duration) *syncer {
	return &syncer{policy: policy, interval: interval, cur: newSyncRound(), kick: make(chan struct{}, 1)}
}

func newSyncRound() *syncRound {
	return &syncRound{segments: make(map[*segment]struct{}), done: make(chan struct{})}
}

// markDirty notes that s was written to and returns the round that will
// flush it, or nil when the caller need not wait.
func (y *syncer) markDirty(s *segment) *syncRound {
	if y.policy == FsyncOS {
		return nil
	}
	y.mu.Lock()
	r := y.cur
	r.segments[s] = struct{}{}
	y.mu.Unlock()
	if y.policy != FsyncAlways {
		return nil
	}
	select {
	case y.kick <- struct{}{}:
	default:
	}
	return r
}

// wait blocks until r is flushed or ctx ends.
func (r *syncRound) wait(ctx context.Context) error {
	if r == nil {
		return nil
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run flushes rounds until ctx ends, then flushes once more.
func (y *syncer) run(ctx context.Context) {
	var tick <-chan time.Time
	if y.policy == FsyncInterval {
		t := time.NewTicker(y.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			y.flush()
			return
		case <-y.kick:
		case <-tick:
		}
		y.flush()
	}
}

// flush takes the current round and fsyncs its segments.
func (y *syncer) flush() {
	y.mu.Lock()
	r := y.cur
	if len(r.segments) == 0 {
		y.mu.Unlock()
		return
	}
	y.cur = newSyncRound()
	y.mu.Unlock()
	var errs []error
	for s := range r.segments {
		// A segment deleted by retention after its write is gone anyway.
		if err := s.syncLog(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	r.err = errors.Join(errs...)
	close(r.done)
}
