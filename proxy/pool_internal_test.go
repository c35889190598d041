package proxy

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func testPool(max int, wait time.Duration) *connPool {
	cp := newConnPool(newPoolMetrics(), prometheus.NewGauge(prometheus.GaugeOpts{Name: "t"}))
	cp.configure(PoolConfig{Mode: PoolMultiplex, MaxServerConnections: max, WaitTimeout: wait})
	return cp
}

// fakeDial opens connections that go nowhere, counting them.
func fakeDial(n *atomic.Int32) func(context.Context) (*BackendConn, error) {
	return func(context.Context) (*BackendConn, error) {
		n.Add(1)
		return &BackendConn{Server: "s", pio: NewPacketIO(discardConn{})}, nil
	}
}

func (cp *connPool) queued(server string) int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return len(cp.server(server).waiters)
}

// TestPoolServesInTurn: borrowers that find the pool full are served in the
// order they came, a connection coming back goes to the first of them (not
// to whoever asks next), and the counts stay right.
func TestPoolServesInTurn(t *testing.T) {
	cp := testPool(2, 5*time.Second)
	app := poolKey{user: "app", noDB: true}
	var dials atomic.Int32
	ctx := context.Background()
	var held []*BackendConn
	for range 2 {
		b, err := cp.get(ctx, "s", app, nil, fakeDial(&dials))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
	}
	served := make(chan int, 3)
	conns := make(chan *BackendConn, 3)
	for i := range 3 {
		go func() {
			b, err := cp.get(ctx, "s", app, nil, fakeDial(&dials))
			if err != nil {
				t.Error(err)
				return
			}
			served <- i
			conns <- b
		}()
		for deadline := time.Now().Add(5 * time.Second); cp.queued("s") != i+1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waiter %d not queued", i)
			}
		}
	}
	// One comes back: the first waiter has it, and a newcomer queues
	// behind the other two rather than taking it.
	cp.put(held[0])
	if got := <-served; got != 0 {
		t.Fatalf("waiter %d served first", got)
	}
	go func() {
		b, err := cp.get(ctx, "s", app, nil, fakeDial(&dials))
		if err == nil {
			served <- 3
			conns <- b
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); cp.queued("s") != 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the newcomer did not queue behind the waiters")
		}
	}
	// Each connection coming back serves the next in line.
	back := []func(){func() { cp.put(held[1]) }, func() { cp.put(<-conns) }, func() { cp.put(<-conns) }}
	for i, want := range []int{1, 2, 3} {
		back[i]()
		if got := <-served; got != want {
			t.Fatalf("served %d, want %d", got, want)
		}
	}
	if dials.Load() != 2 {
		t.Fatalf("%d connections opened for 5 borrowers of a pool of 2", dials.Load())
	}
	cp.put(<-conns)
	cp.put(<-conns)
	st := cp.stats()
	if len(st) != 1 || st[0].Open != 2 || st[0].InUse != 0 || st[0].Idle != 2 {
		t.Fatalf("stats after all came back: %+v; want 2 open, 2 idle", st)
	}
}

// TestPoolWaitTimeout: a borrower that waits past pool.wait_timeout gets an
// error naming the server and the limit, and leaves the queue.
func TestPoolWaitTimeout(t *testing.T) {
	cp := testPool(1, 50*time.Millisecond)
	var dials atomic.Int32
	ctx := context.Background()
	b, err := cp.get(ctx, "s", poolKey{user: "app", noDB: true}, nil, fakeDial(&dials))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cp.get(ctx, "s", poolKey{user: "app", noDB: true}, nil, fakeDial(&dials))
	var full *errPoolTimeout
	if !errors.As(err, &full) || full.server != "s" || full.max != 1 {
		t.Fatalf("a borrower of a full pool got %v", err)
	}
	if n := cp.queued("s"); n != 0 {
		t.Fatalf("%d waiters left after the timeout", n)
	}
	cp.put(b)
	if _, err := cp.get(ctx, "s", poolKey{user: "app", noDB: true}, nil, fakeDial(&dials)); err != nil || dials.Load() != 1 {
		t.Fatalf("after the timeout: %v, %d connections opened", err, dials.Load())
	}
}

// TestPoolOtherUser: a connection coming back to a queue headed by another
// user is closed and its place goes to that user; an idle one of another
// user is closed to make room.
func TestPoolOtherUser(t *testing.T) {
	cp := testPool(1, 5*time.Second)
	var dials atomic.Int32
	ctx := context.Background()
	a, err := cp.get(ctx, "s", poolKey{user: "a", noDB: true}, nil, fakeDial(&dials))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *BackendConn)
	go func() {
		b, err := cp.get(ctx, "s", poolKey{user: "b", noDB: true}, nil, fakeDial(&dials))
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	for deadline := time.Now().Add(5 * time.Second); cp.queued("s") != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("user b not queued")
		}
	}
	cp.put(a)
	b := <-got
	if b == a || b.pool.key.user != "b" || dials.Load() != 2 {
		t.Fatalf("user b got %p (a's %p) of user %q after %d dials; want a new connection", b, a, b.pool.key.user, dials.Load())
	}
	cp.put(b)
	// b's idle connection makes room for a.
	if _, err := cp.get(ctx, "s", poolKey{user: "a", noDB: true}, nil, fakeDial(&dials)); err != nil || dials.Load() != 3 {
		t.Fatalf("user a with b's connection idle: %v after %d dials", err, dials.Load())
	}
	for _, st := range cp.stats() {
		if st.User == "a" && (st.Open != 1 || st.InUse != 1) || st.User == "b" && (st.Open != 0 || st.Waits != 1) {
			t.Fatalf("stats: %+v; want a's one connection in use, b's none after its one wait", cp.stats())
		}
	}
}
