// Package proxy is Sluice's MySQL protocol front: the listener, the client
// handshake and authentication, the session loop, backend connections and
// the packet layer beneath them.
//
// A Session (session.go) owns the client connection, the login and the
// command loop. Its processor (command.go) runs each command: dispatch by
// command, then for COM_QUERY and COM_STMT_EXECUTE one pipeline: route (the
// router.Policy decides, the processor carries the decision out on its
// backendSet, backends.go), forward (relay.go's relay streams the answer
// packet by packet), recover from a lost connection (recovery.go decides,
// as a table), record (querylog.go, replay.go's transaction log, the
// session state in state.go). Prepared statements are stmt.go's.
package proxy

import (
	"github.com/go-mysql-org/go-mysql/mysql"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/filter"
	"github.com/sluice-proxy/sluice/internal/digest"
	"github.com/sluice-proxy/sluice/router"
)

// Server accepts client connections and runs a session for each.
type Server struct {
	cfg        atomic.Pointer[Config]
	accounts   *Accounts
	router     *router.Router
	classifier *router.Classifier
	log        *slog.Logger
	metrics    *Metrics
	// pool holds the server connections sessions share (pool.mode).
	pool     *connPool
	poolOnce sync.Once

	genlog  atomic.Pointer[audit.Genlog]
	filters atomic.Pointer[filter.Chain]
	digests atomic.Pointer[digest.Table]
	// redact is the router's side of the query log's selective
	// redaction, made when the first record needs it.
	redact atomic.Pointer[redactState]
	// commandsTotal counts client commands, for Stats.
	commandsTotal atomic.Uint64

	nextID atomic.Uint32
	mu     sync.Mutex
	// sessions maps live sessions to their client connection, so Shutdown
	// can close them; perUser counts logged-in sessions by user.
	sessions map[*Session]net.Conn
	perUser  map[string]int
	wg       sync.WaitGroup
	draining atomic.Bool
}

// NewServer builds a proxy server. reg may be nil.
func NewServer(cfg Config, accounts *Accounts, rt *router.Router, reg prometheus.Registerer, log *slog.Logger) *Server {
	size := cfg.ClassifierCacheSize
	s := &Server{accounts: accounts, router: rt, classifier: router.NewClassifier(size, log), log: log,
		metrics: newMetrics(reg), sessions: map[*Session]net.Conn{}, perUser: map[string]int{}}
	s.cfg.Store(&cfg)
	pm := newPoolMetrics()
	s.pool = newConnPool(pm, s.metrics.backendConns)
	s.pool.configure(cfg.Pool)
	s.pool.retired = func(name string) bool {
		_, ok := rt.Server(name)
		return !ok
	}
	s.pool.changed = rt.Changed
	if reg != nil {
		reg.MustRegister(pm.waits, pm.waitSeconds, pm.timeouts, pm.closed, newPoolCollector(s.pool))
	}
	if reg != nil && accounts != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_auth_learned_passwords",
			Help: "Account passwords Sluice holds in memory, learned from full authentications (auth.password_cache_ttl).",
		}, func() float64 { return float64(accounts.LearnedPasswords()) }))
	}
	return s
}

// SetFilters sets the chain of filters that run before routing (nil: none).
func (s *Server) SetFilters(c *filter.Chain) { s.filters.Store(c) }

// SetGenlog sets (or with nil, removes) the query log.
func (s *Server) SetGenlog(g *audit.Genlog) { s.genlog.Store(g) }

// SetConfig applies a reloaded config to new sessions and commands.
func (s *Server) SetConfig(cfg Config) {
	s.cfg.Store(&cfg)
	s.pool.configure(cfg.Pool)
}

// PoolStats lists the pooled server connections by server and user.
func (s *Server) PoolStats() []PoolStats { return s.pool.stats() }

// Sessions is the number of client sessions now.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Serve accepts connections on ln until ctx is done or ln is closed. It
// does not wait for sessions: Shutdown does.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.poolOnce.Do(func() { go s.pool.run(ctx) })
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("accept failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		backoff = 0
		s.start(ctx, conn)
	}
}

func (s *Server) start(ctx context.Context, conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	sess := newSession(s, conn)
	s.mu.Lock()
	s.sessions[sess] = conn
	n := len(s.sessions)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.sessions, sess)
			s.mu.Unlock()
		}()
		if s.draining.Load() {
			sess.refuse(newSQLError(1053, "Server shutdown in progress"))
			return
		}
		if limit := s.cfg.Load().MaxConnections; limit > 0 && n > limit {
			s.metrics.refused.Inc()
			sess.refuse(newSQLError(1040, "Too many connections"))
			return
		}
		sess.run(ctx)
	}()
}

// userLimit is the most sessions user may have; 0 means no limit.
func (c *Config) userLimit(user string) int {
	if n, ok := c.UserMaxConnections[user]; ok {
		return n
	}
	return c.MaxUserConnections
}

// admitUser counts a logged-in session of user, or refuses it (error 1203,
// as MySQL's max_user_connections) when the user is at its limit.
func (s *Server) admitUser(user string) *SQLError {
	limit := s.cfg.Load().userLimit(user)
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && s.perUser[user] >= limit {
		s.metrics.refused.Inc()
		return newSQLError(mysql.ER_TOO_MANY_USER_CONNECTIONS, "User %s already has more than 'max_user_connections' active connections", user)
	}
	s.perUser[user]++
	return nil
}

// releaseUser forgets a session of user.
func (s *Server) releaseUser(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser[user] <= 1 {
		delete(s.perUser, user)
	} else {
		s.perUser[user]--
	}
}

// Shutdown drains: it stops taking new sessions, closes sessions that are
// idle outside a transaction, lets the others finish their statement or
// transaction until ctx is done, then closes the rest and waits for their
// goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	for sess, conn := range s.sessions {
		if sess.idle.Load() {
			conn.Close()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.pool.closeIdle(true)
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	n := len(s.sessions)
	for _, conn := range s.sessions {
		conn.Close()
	}
	s.mu.Unlock()
	<-done
	s.pool.closeIdle(true)
	return fmt.Errorf("closed %d sessions still open after the drain timeout", n)
}
