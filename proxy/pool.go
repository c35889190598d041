package proxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// This file is the connection pool (pool.mode multiplex or idle): the
// servers' connections are shared by the sessions of each user, at most
// pool.max_server_connections per server. A session borrows a connection for
// as long as decideRelease says something lives only on it, and brings it to
// its own state before use (backendSet.sync), so sessions never see each
// other's state.

// poolKey says which connections may serve a session: those logged in as
// its user, speaking its dialect of the protocol (capabilities shape every
// answer; the collation is the connection's character set at login) and,
// for a server that takes PROXY headers, naming its client's address. A
// session without a schema needs a connection without one: no command
// leaves a schema once chosen.
type poolKey struct {
	user      string
	caps      uint32
	collation byte
	client    string
	noDB      bool
}

// connPool is the pool of every server. It is safe for concurrent use.
type connPool struct {
	mu      sync.Mutex
	servers map[string]*serverPool
	// max, wait and idleTimeout are pool.max_server_connections,
	// pool.wait_timeout and pool.idle_timeout, as last configured.
	max         int
	wait        time.Duration
	idleTimeout time.Duration
	metrics     *poolMetrics
	// conns counts every server connection of the process
	// (sluice_backend_connections).
	conns prometheus.Gauge
	// retired reports a server down or in maintenance: its connections
	// are closed as they come back, and when idle, not kept.
	retired func(server string) bool
	// changed is closed when the monitor next publishes what it saw of
	// the servers: then idle connections to retired ones are closed.
	changed func() <-chan struct{}
}

// serverPool is one server's connections.
type serverPool struct {
	// open counts connections open or being opened, idle or not.
	open int
	// idle are the connections nobody uses, by key, most recently
	// returned last.
	idle map[poolKey][]*BackendConn
	// waiters are the borrowers waiting for a connection, served first
	// come first served: nobody overtakes them.
	waiters []*waiter
	users   map[string]*userStats
}

// userStats are a server's connections of one user, for metrics and the API.
type userStats struct {
	open, inUse     int
	waits, timeouts int64
}

func newConnPool(m *poolMetrics, conns prometheus.Gauge) *connPool {
	return &connPool{servers: map[string]*serverPool{}, metrics: m, conns: conns}
}

// configure applies the pool: section; connections already open stay.
func (cp *connPool) configure(c PoolConfig) {
	c = c.WithDefaults()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.max, cp.wait, cp.idleTimeout = c.MaxServerConnections, c.WaitTimeout, c.IdleTimeout
	for _, sp := range cp.servers {
		for len(sp.waiters) > 0 && sp.open < cp.max { // a larger limit admits waiters
			sp.open++
			cp.serveHead(sp, nil)
		}
	}
}

func (cp *connPool) server(name string) *serverPool {
	sp := cp.servers[name]
	if sp == nil {
		sp = &serverPool{idle: map[poolKey][]*BackendConn{}, users: map[string]*userStats{}}
		cp.servers[name] = sp
	}
	return sp
}

func (sp *serverPool) user(name string) *userStats {
	u := sp.users[name]
	if u == nil {
		u = &userStats{}
		sp.users[name] = u
	}
	return u
}

// waiter is a borrower waiting for its turn.
type waiter struct {
	key poolKey
	// turn receives a connection of its key, or nil: a place under the
	// limit, counted for it, in which it opens its own.
	turn chan *BackendConn
}

// serveHead gives the first waiter b (of its key; closed if not, and
// returned for the caller to close) or, with b nil, a freed place. It
// reports false when nobody waits or the place is over the limit. Called
// with cp.mu held; b's place is counted in sp.open either way.
func (cp *connPool) serveHead(sp *serverPool, b *BackendConn) (served bool, closing *BackendConn) {
	if len(sp.waiters) == 0 || sp.open > cp.max {
		return false, nil
	}
	w := sp.waiters[0]
	sp.waiters = sp.waiters[1:]
	u := sp.user(w.key.user)
	u.inUse++
	if b != nil && b.pool.key == w.key {
		w.turn <- b
		return true, nil
	}
	if b != nil {
		sp.user(b.pool.key.user).open--
		closing = b
	}
	u.open++
	w.turn <- nil
	return true, closing
}

// freePlace is a connection's place freed (closed): the first waiter takes
// it, or the server has one connection less.
func (cp *connPool) freePlace(sp *serverPool) {
	if served, _ := cp.serveHead(sp, nil); !served {
		sp.open--
	}
}

// errPoolTimeout is a borrower's wait for a connection running out.
type errPoolTimeout struct {
	server string
	max    int
	wait   time.Duration
}

func (e *errPoolTimeout) Error() string {
	return fmt.Sprintf("no connection to %s free: all %d in use (pool.max_server_connections) for pool.wait_timeout %v; raise them, or look for sessions holding connections (transactions left open)",
		e.server, e.max, e.wait)
}

// get borrows a connection to server for key: an idle one of the key (prefer,
// when it is idle, the one the session had last), else a new one from dial
// while the server is under its limit (closing another user's idle one to
// make room), else its turn within pool.wait_timeout, after those who
// waited before it.
func (cp *connPool) get(ctx context.Context, server string, key poolKey, prefer *BackendConn,
	dial func(context.Context) (*BackendConn, error)) (*BackendConn, error) {
	cp.mu.Lock()
	sp := cp.server(server)
	if len(sp.waiters) == 0 {
		if b := sp.takeIdle(key, prefer); b != nil {
			sp.user(key.user).inUse++
			cp.mu.Unlock()
			return b, nil
		}
		if sp.open < cp.max {
			sp.open++
			u := sp.user(key.user)
			u.open++
			u.inUse++
			cp.mu.Unlock()
			return cp.open(ctx, sp, key, dial)
		}
		if victim := sp.oldestIdle(); victim != nil {
			// Another user's connection nobody uses: its place is ours.
			sp.removeIdle(victim)
			sp.user(victim.pool.key.user).open--
			u := sp.user(key.user)
			u.open++
			u.inUse++
			cp.mu.Unlock()
			cp.closeConn(victim)
			return cp.open(ctx, sp, key, dial)
		}
	}
	// Full, or others wait already: queue.
	w := &waiter{key: key, turn: make(chan *BackendConn, 1)}
	sp.waiters = append(sp.waiters, w)
	sp.user(key.user).waits++
	max, wait := cp.max, cp.wait
	cp.mu.Unlock()
	start := time.Now()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var b *BackendConn
	served := false
	select {
	case b = <-w.turn:
		served = true
	case <-timer.C:
	case <-ctx.Done():
	}
	if !served {
		// Served (under the lock) unless still queued.
		cp.mu.Lock()
		queued := sp.dropWaiter(w)
		if queued {
			sp.user(key.user).timeouts++
		}
		cp.mu.Unlock()
		if queued {
			cp.metrics.timedOut(server, key.user, time.Since(start))
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, &errPoolTimeout{server: server, max: max, wait: wait}
		}
		b = <-w.turn // served as it gave up: take it
	}
	cp.metrics.waited(server, key.user, time.Since(start))
	if b != nil {
		return b, nil
	}
	return cp.open(ctx, sp, key, dial) // a place, counted for us
}

// open opens a connection in a place counted for it.
func (cp *connPool) open(ctx context.Context, sp *serverPool, key poolKey,
	dial func(context.Context) (*BackendConn, error)) (*BackendConn, error) {
	b, err := dial(ctx)
	if err != nil {
		cp.mu.Lock()
		u := sp.user(key.user)
		u.open--
		u.inUse--
		cp.freePlace(sp)
		cp.mu.Unlock()
		return nil, err
	}
	b.pool = &pooled{key: key}
	return b, nil
}

// dropWaiter takes w out of the queue; false when it is no longer there
// (served).
func (sp *serverPool) dropWaiter(w *waiter) bool {
	for i, x := range sp.waiters {
		if x == w {
			sp.waiters = append(sp.waiters[:i], sp.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// takeIdle removes and returns an idle connection of key: prefer if it is
// one, else the most recently returned (warm, and the others may time out).
func (sp *serverPool) takeIdle(key poolKey, prefer *BackendConn) *BackendConn {
	conns := sp.idle[key]
	if len(conns) == 0 {
		return nil
	}
	i := len(conns) - 1
	if prefer != nil {
		for j, b := range conns {
			if b == prefer {
				i = j
				break
			}
		}
	}
	b := conns[i]
	sp.idle[key] = append(conns[:i], conns[i+1:]...)
	if len(sp.idle[key]) == 0 {
		delete(sp.idle, key)
	}
	return b
}

// oldestIdle is the idle connection returned longest ago, of any key.
func (sp *serverPool) oldestIdle() *BackendConn {
	var oldest *BackendConn
	for _, conns := range sp.idle {
		if len(conns) > 0 && (oldest == nil || conns[0].pool.since.Before(oldest.pool.since)) {
			oldest = conns[0]
		}
	}
	return oldest
}

func (sp *serverPool) removeIdle(b *BackendConn) {
	conns := sp.idle[b.pool.key]
	for i, c := range conns {
		if c == b {
			sp.idle[b.pool.key] = append(conns[:i], conns[i+1:]...)
			break
		}
	}
	if len(sp.idle[b.pool.key]) == 0 {
		delete(sp.idle, b.pool.key)
	}
}

// put returns a borrowed connection: to the first waiter, else to the
// idle ones; closed when its server is retired.
func (cp *connPool) put(b *BackendConn) {
	if cp.retired != nil && cp.retired(b.Server) {
		cp.discard(b)
		cp.closeConn(b)
		return
	}
	cp.mu.Lock()
	sp := cp.server(b.Server)
	sp.user(b.pool.key.user).inUse--
	b.pool.key.noDB = b.db == ""
	served, closing := cp.serveHead(sp, b)
	if !served {
		b.pool.since = time.Now()
		sp.idle[b.pool.key] = append(sp.idle[b.pool.key], b)
	}
	cp.mu.Unlock()
	if closing != nil {
		cp.closeConn(closing) // its place went to a waiter of another user
	}
}

// discard forgets a borrowed connection the borrower closes (it failed, or
// it holds state no one else may see).
func (cp *connPool) discard(b *BackendConn) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	sp := cp.server(b.Server)
	u := sp.user(b.pool.key.user)
	u.inUse--
	u.open--
	cp.freePlace(sp)
}

// closeIdle closes the connections idle longer than pool.idle_timeout or
// to a retired server (all of them when all is set: a shutdown).
func (cp *connPool) closeIdle(all bool) {
	now := time.Now()
	var closing []*BackendConn
	cp.mu.Lock()
	for name, sp := range cp.servers {
		retired := cp.retired != nil && cp.retired(name)
		for key, conns := range sp.idle {
			keep := conns[:0]
			for _, b := range conns {
				if all || retired || now.Sub(b.pool.since) > cp.idleTimeout {
					closing = append(closing, b)
					sp.user(key.user).open--
					cp.freePlace(sp)
				} else {
					keep = append(keep, b)
				}
			}
			if len(keep) == 0 {
				delete(sp.idle, key)
			} else {
				sp.idle[key] = keep
			}
		}
	}
	cp.mu.Unlock()
	for _, b := range closing {
		cp.closeConn(b)
	}
}

func (cp *connPool) closeConn(b *BackendConn) {
	b.QuitAndClose()
	cp.conns.Dec()
	cp.metrics.closed.Inc()
}

// run closes idle connections every quarter of pool.idle_timeout until ctx
// ends, then all of them.
func (cp *connPool) run(ctx context.Context) {
	for {
		cp.mu.Lock()
		every := cp.idleTimeout / 4
		cp.mu.Unlock()
		if every < 100*time.Millisecond {
			every = 100 * time.Millisecond
		}
		var changed <-chan struct{}
		if cp.changed != nil {
			changed = cp.changed()
		}
		select {
		case <-ctx.Done():
			cp.closeIdle(true)
			return
		case <-time.After(every):
		case <-changed:
		}
		cp.closeIdle(false)
	}
}

// PoolStats are one server's pooled connections of one user.
type PoolStats struct {
	Server string `json:"server"`
	PoolUse
}

// PoolUse is what a user has of a server's pool: its connections, and how
// often its statements waited for one (and gave up after pool.wait_timeout).
type PoolUse struct {
	User     string `json:"user"`
	Open     int    `json:"open"`
	InUse    int    `json:"in_use"`
	Idle     int    `json:"idle"`
	Waits    int64  `json:"waits"`
	Timeouts int64  `json:"timeouts"`
}

// stats lists the pools' connections by server and user.
func (cp *connPool) stats() []PoolStats {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []PoolStats
	for name, sp := range cp.servers {
		for user, u := range sp.users {
			if u.open == 0 && u.waits == 0 {
				continue
			}
			out = append(out, PoolStats{Server: name, PoolUse: PoolUse{User: user, Open: u.open, InUse: u.inUse,
				Idle: u.open - u.inUse, Waits: u.waits, Timeouts: u.timeouts}})
		}
	}
	return out
}

// pooled is what the pool knows of a connection it handed out.
type pooled struct {
	key poolKey
	// since is when the connection last went back to the pool.
	since time.Time
}

// poolMetrics are the pool's counters; the gauges are read from the pool
// when scraped (poolCollector).
type poolMetrics struct {
	waits, timeouts *prometheus.CounterVec
	waitSeconds     *prometheus.CounterVec
	closed          prometheus.Counter
}

func (m *poolMetrics) waited(server, user string, d time.Duration) {
	m.waits.WithLabelValues(server, user).Inc()
	m.waitSeconds.WithLabelValues(server, user).Add(d.Seconds())
}

func (m *poolMetrics) timedOut(server, user string, d time.Duration) {
	m.waited(server, user, d)
	m.timeouts.WithLabelValues(server, user).Inc()
}

func newPoolMetrics() *poolMetrics {
	labels := []string{"server", "user"}
	return &poolMetrics{
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_pool_waits_total",
			Help: "Statements that waited for a pooled connection because the server's were all in use."}, labels),
		waitSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_pool_wait_seconds_total",
			Help: "Time statements spent waiting for a pooled connection."}, labels),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_pool_wait_timeouts_total",
			Help: "Statements that failed after waiting pool.wait_timeout for a pooled connection."}, labels),
		closed: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_pool_idle_closed_total",
			Help: "Pooled connections closed while idle (pool.idle_timeout, or to make room for another user)."}),
	}
}

// poolCollector reports the pool's connections by server and user.
type poolCollector struct {
	pool              *connPool
	open, inUse, idle *prometheus.Desc
}

func newPoolCollector(cp *connPool) *poolCollector {
	labels := []string{"server", "user"}
	return &poolCollector{pool: cp,
		open:  prometheus.NewDesc("sluice_pool_connections", "Pooled server connections open, by server and user.", labels, nil),
		inUse: prometheus.NewDesc("sluice_pool_connections_in_use", "Pooled server connections borrowed by a session.", labels, nil),
		idle:  prometheus.NewDesc("sluice_pool_connections_idle", "Pooled server connections waiting in the pool.", labels, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.inUse
	ch <- c.idle
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.pool.stats() {
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(s.Open), s.Server, s.User)
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(s.InUse), s.Server, s.User)
		ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(s.Idle), s.Server, s.User)
	}
}
