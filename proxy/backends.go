package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/monitor"
	"github.com/sluice-proxy/sluice/router"
)

// backendSet is a session's connections to the servers: the primary (with
// readconnroute, the session's one connection), the replicas it has read
// from, and what routing remembers of them. It logs in as the session's user
// and brings each connection up to the session's state before handing it
// out. It belongs to the session's goroutine.
type backendSet struct {
	srv *Server
	log *slog.Logger
	// login is what every connection logs in with; DB follows the state.
	login Login
	state *SessionState
	// closing is told of a connection about to close, before it does:
	// the session's prepared statements forget their ids on it.
	closing func(*BackendConn)

	primary  *BackendConn
	replicas map[string]*BackendConn
	// last ran the previous statement; tx holds a read-only transaction
	// open on a replica.
	last, tx *BackendConn
	// lastReplica names the replica the previous read went to; the router
	// keeps reads there while it is not busier than the others.
	lastReplica string
	// broken names servers whose connection failed for this session.
	broken map[string]bool
	// prev are the pooled connections the session gave back last, one per
	// server: it takes them again when nobody else has.
	prev []*BackendConn
	// readFrom names the replicas the session reads from, under
	// router.max_replica_connections (with pooling it may hold none of
	// their connections between statements).
	readFrom map[string]bool
}

// errStateRestore wraps a failure to bring a new primary connection up to
// the session's state.
type errStateRestore struct {
	server string
	err    error
}

func (e *errStateRestore) Error() string {
	return fmt.Sprintf("restoring session state on %s failed: %v", e.server, e.err)
}

func (e *errStateRestore) Unwrap() error { return e.err }

// primaryConn is the connection to the primary, opened if needed. With move
// (a policy that moves sessions, outside a transaction), a session whose
// primary role moved (failover, switchover) follows it, carrying its state
// over; with keep (the session's temporary tables live there) it stays while
// no other primary is known.
func (bs *backendSet) primaryConn(ctx context.Context, move, keep bool) (*BackendConn, error) {
	if bs.primary != nil && !move {
		return bs.primary, nil
	}
	t, err := bs.srv.router.Primary()
	if bs.primary != nil {
		if err == nil && t.Server == bs.primary.Server {
			return bs.primary, nil
		}
		if err != nil && keep {
			// It learns from its next statement whether the server is gone.
			return bs.primary, nil
		}
		if err == nil {
			bs.log.Info("primary moved; the session follows", "from", bs.primary.Server, "to", t.Server)
		}
		// Moved, or down or turned read only (a switchover) with no other
		// known yet: dialPrimary waits for the next primary rather than the
		// session failing on a dead or read-only connection.
		bs.dropPrimary()
	}
	b, err := bs.dialPrimary(ctx)
	if err != nil {
		return nil, err
	}
	if err := bs.sync(b, true); err != nil {
		bs.closeConn(b)
		return nil, &errStateRestore{server: b.Server, err: err}
	}
	bs.primary = b
	return b, nil
}

// dialPrimary connects to the primary. With router.primary_wait, a primary
// not known yet (a failover under way) or refusing connections (down, and the
// monitor has not seen it yet) is waited for: Sluice tries again each time the
// monitor has looked at the servers, until primary_wait is over. An error the
// server sends (access denied, too many connections) is returned at once.
func (bs *backendSet) dialPrimary(ctx context.Context) (*BackendConn, error) {
	r, m := bs.srv.router, bs.srv.metrics
	wait := bs.srv.cfg.Load().Recovery.PrimaryWait
	var deadline time.Time // set at the first wait
	defer func() {
		if !deadline.IsZero() {
			m.primaryWaiting.Dec()
		}
	}()
	for {
		changed := r.Changed() // before the snapshot is read: no publish is missed
		t, err := r.Primary()
		if err == nil {
			var b *BackendConn
			if b, err = bs.dial(ctx, t); err == nil {
				return b, nil
			}
		}
		var se *SQLError
		if wait <= 0 || errors.As(err, &se) {
			return nil, err
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(wait)
			m.primaryWaiting.Inc()
		}
		timer := time.NewTimer(time.Until(deadline))
		select {
		case <-changed:
			timer.Stop()
			continue
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
		}
		m.primaryWaitTimeouts.Inc()
		return nil, fmt.Errorf("%w (waited router.primary_wait, %v)", err, wait)
	}
}

// connectTo opens the session's first connection, to t, at login.
func (bs *backendSet) connectTo(ctx context.Context, t router.Target) error {
	b, err := bs.dial(ctx, t)
	if err != nil {
		return err
	}
	bs.primary = b
	return nil
}

// replicaConn returns an up-to-date connection to a usable replica at most
// maxLag behind (0: router.max_replication_lag), or nil when there is none:
// then the primary serves the read.
func (bs *backendSet) replicaConn(ctx context.Context, maxLag time.Duration) *BackendConn {
	rt := bs.srv.router
	limit := rt.Config().MaxReplicaConnections
	for range 3 {
		atLimit := limit > 0 && len(bs.readFrom) >= limit
		t, ok := rt.Replica(maxLag, func(name string) bool {
			// At router.max_replica_connections, only servers already read from.
			return bs.broken[name] || (atLimit && !bs.readFrom[name] && !bs.isPrimary(name))
		}, bs.lastReplica)
		if !ok && atLimit {
			// None of those is usable now (drained, lagging): let go of
			// them to make room for one that is.
			if t, ok = rt.Replica(maxLag, func(name string) bool { return bs.broken[name] }, ""); ok {
				for _, b := range bs.replicas {
					bs.dropReplica(b)
				}
				clear(bs.readFrom)
			}
		}
		if !ok {
			return nil
		}
		b, err := bs.conn(ctx, t)
		if err == nil {
			bs.lastReplica = t.Server
			if !bs.isPrimary(t.Server) && limit > 0 {
				if bs.readFrom == nil {
					bs.readFrom = map[string]bool{}
				}
				bs.readFrom[t.Server] = true
			}
			return b
		}
	}
	return nil
}

// isPrimary reports whether the session's primary connection is to name.
func (bs *backendSet) isPrimary(name string) bool {
	return bs.primary != nil && bs.primary.Server == name
}

// conn returns the session's connection to t, opening and syncing it.
func (bs *backendSet) conn(ctx context.Context, t router.Target) (*BackendConn, error) {
	if bs.isPrimary(t.Server) {
		return bs.primary, nil
	}
	b := bs.replicas[t.Server]
	if b == nil {
		var err error
		if b, err = bs.dial(ctx, t); err != nil {
			var full *errPoolTimeout
			if errors.As(err, &full) {
				return nil, err // busy, not broken: the read goes elsewhere
			}
			bs.broken[t.Server] = true
			bs.log.Warn("replica connection failed; reads go elsewhere", "server", t.Server, "err", err)
			return nil, err
		}
		if bs.replicas == nil {
			bs.replicas = map[string]*BackendConn{}
		}
		bs.replicas[t.Server] = b
	}
	if err := bs.sync(b, false); err != nil {
		bs.lose(b)
		bs.log.Warn("replaying session state on a replica failed; closed that connection for this session",
			"server", t.Server, "err", err)
		return nil, err
	}
	return b, nil
}

// sync brings a connection to the session's current state: a pooled one
// last used by another session is set to exactly this session's variables
// (those it does not have back to their defaults), schema, options and, on
// the primary, LAST_INSERT_ID(). Nothing is sent when it matches.
func (bs *backendSet) sync(b *BackendConn, primary bool) error {
	st := bs.state
	insertID := primary && b.pool != nil && b.lastInsertID != st.lastInsertID
	if b.owner == st && b.synced == st.version && !insertID {
		return nil
	}
	var sql string
	if b.owner == st && b.synced >= st.resetAt {
		sql = st.replaySQL(b.synced)
	} else {
		sql = st.diffSQL(b.vars, b.baseline)
	}
	if insertID {
		sql = withAssignment(sql, "@@SESSION.last_insert_id = "+strconv.FormatUint(st.lastInsertID, 10))
	}
	if sql != "" {
		if err := b.command(commandPacket(mysql.COM_QUERY, sql)); err != nil {
			return fmt.Errorf("replay variables: %w", err)
		}
		b.applied(st)
		if insertID {
			b.lastInsertID = st.lastInsertID
		}
	}
	if b.db != st.db && st.db != "" {
		if err := b.command(commandPacket(mysql.COM_INIT_DB, st.db)); err != nil {
			return fmt.Errorf("replay schema: %w", err)
		}
		b.db = st.db
	}
	// Multi-statements are on from login when the client asked (the same
	// for every connection of a pool key), then as COM_SET_OPTION set them.
	want := bs.login.Capabilities&mysql.CLIENT_MULTI_STATEMENTS != 0
	if st.multiStatements != nil {
		want = *st.multiStatements
	}
	have := b.hs.Capabilities&mysql.CLIENT_MULTI_STATEMENTS != 0
	if b.multiStatements != nil {
		have = *b.multiStatements
	}
	if want != have {
		opt := byte(1)
		if want {
			opt = 0
		}
		if err := b.command([]byte{mysql.COM_SET_OPTION, opt, 0}); err != nil {
			return fmt.Errorf("replay set option: %w", err)
		}
		b.multiStatements = &want
	}
	b.owner, b.synced = st, st.version
	return nil
}

// dial logs in to t as the session's user, or with pooling borrows a
// connection of that user from the pool (the session's own previous one
// when nobody took it since).
func (bs *backendSet) dial(ctx context.Context, t router.Target) (*BackendConn, error) {
	cfg := bs.srv.cfg.Load()
	if !cfg.Pool.Pooled() {
		return bs.open(ctx, t, cfg)
	}
	key := poolKey{user: bs.login.User, caps: bs.login.Capabilities, collation: bs.login.Collation, noDB: bs.state.db == ""}
	if cfg.ProxyProtocolServers[t.Server] && bs.login.Client != nil {
		key.client, _, _ = net.SplitHostPort(bs.login.Client.String())
	}
	var prefer *BackendConn
	for _, b := range bs.prev {
		if b.Server == t.Server {
			prefer = b
		}
	}
	return bs.srv.pool.get(ctx, t.Server, key, prefer, func(ctx context.Context) (*BackendConn, error) {
		b, err := bs.open(ctx, t, cfg)
		if err != nil {
			return nil, err
		}
		if err := b.readBaseline(); err != nil {
			bs.closeConn(b)
			return nil, err
		}
		return b, nil
	})
}

// open opens a connection to t as the session's user.
func (bs *backendSet) open(ctx context.Context, t router.Target, cfg *Config) (*BackendConn, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	login := bs.login
	login.DB = bs.state.db
	login.ProxyHeader = cfg.ProxyProtocolServers[t.Server]
	// Verify the certificate against the host Sluice dials.
	login.TLS = monitor.TLSFor(cfg.BackendTLS, t.Address)
	b, err := DialBackend(ctx, t.Server, t.Address, login)
	if err != nil {
		return nil, err
	}
	b.db = bs.state.db
	bs.srv.metrics.backendConns.Inc()
	return b, nil
}

// lose closes a connection that failed for this session, and keeps reads
// off its server.
func (bs *backendSet) lose(b *BackendConn) {
	if b != bs.primary {
		bs.broken[b.Server] = true
	}
	bs.unslot(b)
	bs.closeConn(b)
}

// drop lets go of one of the session's connections, which is fine: back to
// the pool, or closed when it is the session's own.
func (bs *backendSet) drop(b *BackendConn) {
	bs.unslot(b)
	bs.giveBack(b)
}

// dropPrimary lets go of the session's primary connection.
func (bs *backendSet) dropPrimary() {
	if b := bs.primary; b != nil {
		bs.drop(b)
	}
}

func (bs *backendSet) dropReplica(b *BackendConn) { bs.drop(b) }

// unslot takes b out of every slot of the set.
func (bs *backendSet) unslot(b *BackendConn) {
	if b == bs.primary {
		bs.primary = nil
	} else {
		delete(bs.replicas, b.Server)
	}
	if bs.last == b {
		bs.last = nil
	}
	if bs.tx == b {
		bs.tx = nil
	}
}

// closeConn closes b, which no slot of the set holds (any more).
func (bs *backendSet) closeConn(b *BackendConn) {
	if bs.closing != nil {
		bs.closing(b)
	}
	if b.pool != nil {
		bs.srv.pool.discard(b)
	}
	b.QuitAndClose()
	bs.srv.metrics.backendConns.Dec()
}

// giveBack returns b, which no slot of the set holds any more, to the pool,
// or closes it when it is the session's own.
func (bs *backendSet) giveBack(b *BackendConn) {
	if b.pool == nil {
		bs.closeConn(b)
		return
	}
	if bs.closing != nil {
		bs.closing(b)
	}
	bs.srv.pool.put(b)
}

// release gives every connection of the session back to the pool,
// remembering them to take again when nobody else has.
func (bs *backendSet) release() {
	bs.prev = bs.prev[:0]
	for _, b := range bs.replicas {
		bs.prev = append(bs.prev, b)
		bs.drop(b)
	}
	if b := bs.primary; b != nil {
		bs.prev = append(bs.prev, b)
		bs.drop(b)
	}
}

// holds reports whether the session has a connection.
func (bs *backendSet) holds() bool { return bs.primary != nil || len(bs.replicas) > 0 }

// dropReplicas closes every replica connection, so they reopen clean.
func (bs *backendSet) dropReplicas() {
	for _, b := range bs.replicas {
		bs.dropReplica(b)
	}
}

// closeAll ends the session's use of its connections: given back when
// reusable (nothing of the session's lives on them), else closed.
func (bs *backendSet) closeAll(reusable bool) {
	if reusable {
		bs.release()
		bs.prev = bs.prev[:0]
		return
	}
	for _, b := range bs.replicas {
		bs.unslot(b)
		bs.closeConn(b)
	}
	if b := bs.primary; b != nil {
		bs.unslot(b)
		bs.closeConn(b)
	}
	bs.prev = bs.prev[:0]
}

// reset forgets what routing learned (COM_RESET_CONNECTION,
// COM_CHANGE_USER): replica connections close, servers that failed may be
// tried again.
func (bs *backendSet) reset() {
	bs.dropReplicas()
	clear(bs.broken)
	clear(bs.readFrom)
	bs.tx = nil
}

// count is the number of connections open.
func (bs *backendSet) count() int {
	n := len(bs.replicas)
	if bs.primary != nil {
		n++
	}
	return n
}
