// Package monitor knows what each server is now: reachable or not, primary
// or replica, and how far behind. It polls every server on its own service
// connections and publishes an immutable Snapshot that readers load without
// locks.
package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
)

// Role is what a server is in the replication topology.
type Role string

// Roles a server can have.
const (
	RoleUnknown Role = "unknown"
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
	RoleDown    Role = "down"
)

// ServerConfig names one server to watch.
type ServerConfig struct {
	Name    string
	Address string
	Weight  int
}

// Server is one server's state at one poll.
type Server struct {
	Name     string
	Address  string
	Weight   int
	Role     Role
	Up       bool
	ReadOnly bool
	ServerID uint32
	Version  string
	// Replicating is true when the server has a replication source configured.
	Replicating bool
	// ReplicaLag is Seconds_Behind_Master; negative when unknown.
	ReplicaLag time.Duration
	LastError  string
	CheckedAt  time.Time
}

// Snapshot is the topology at one moment. It is never modified once published.
type Snapshot struct {
	Servers []Server
	// Primary indexes Servers; -1 when no primary is known.
	Primary int
	At      time.Time
}

// PrimaryServer returns the primary, if one is known.
func (s *Snapshot) PrimaryServer() (Server, bool) {
	if s == nil || s.Primary < 0 {
		return Server{}, false
	}
	return s.Servers[s.Primary], true
}

// Config tunes the monitor.
type Config struct {
	Servers  []ServerConfig
	User     string
	Password string
	Interval time.Duration
	Timeout  time.Duration
}

// Monitor polls the servers. Create it with New and run it with Run.
type Monitor struct {
	cfg     Config
	log     *slog.Logger
	current atomic.Pointer[Snapshot]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every publish
	conns   map[string]*client.Conn
}

// New builds a monitor; its first snapshot knows nothing yet.
func New(cfg Config, log *slog.Logger) *Monitor {
	m := &Monitor{cfg: cfg, log: log, changed: make(chan struct{}), conns: map[string]*client.Conn{}}
	servers := make([]Server, len(cfg.Servers))
	for i, s := range cfg.Servers {
		servers[i] = Server{Name: s.Name, Address: s.Address, Weight: s.Weight, Role: RoleUnknown, ReplicaLag: -1}
	}
	m.current.Store(&Snapshot{Servers: servers, Primary: -1})
	return m
}

// Snapshot returns the latest published topology.
func (m *Monitor) Snapshot() *Snapshot { return m.current.Load() }

// Run polls until ctx is done.
func (m *Monitor) Run(ctx context.Context) {
	defer m.closeConns()
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll checks every server once, in parallel, and publishes the result.
func (m *Monitor) Poll(ctx context.Context) {
	prev := m.Snapshot()
	servers := make([]Server, len(m.cfg.Servers))
	var wg sync.WaitGroup
	for i, sc := range m.cfg.Servers {
		wg.Go(func() { servers[i] = m.check(ctx, sc) })
	}
	wg.Wait()
	snap := &Snapshot{Servers: servers, Primary: -1, At: time.Now()}
	for i, s := range servers {
		if s.Role == RolePrimary {
			snap.Primary = i
			break
		}
	}
	for i, s := range servers {
		if i < len(prev.Servers) && prev.Servers[i].Role != s.Role {
			m.log.Info("server role changed", "server", s.Name, "from", prev.Servers[i].Role, "to", s.Role, "error", s.LastError)
		}
	}
	m.current.Store(snap)
	m.mu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// WaitPrimary waits until a primary is known or ctx ends.
func (m *Monitor) WaitPrimary(ctx context.Context) (Server, error) {
	for {
		m.mu.Lock()
		ch := m.changed
		m.mu.Unlock()
		if p, ok := m.Snapshot().PrimaryServer(); ok {
			return p, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Server{}, fmt.Errorf("no primary found: %w", ctx.Err())
		}
	}
}

func (m *Monitor) check(ctx context.Context, sc ServerConfig) Server {
	s := Server{Name: sc.Name, Address: sc.Address, Weight: sc.Weight, Role: RoleDown, ReplicaLag: -1, CheckedAt: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	conn, err := m.conn(ctx, sc.Address)
	if err != nil {
		s.LastError = err.Error()
		return s
	}
	if err := m.query(conn, &s); err != nil {
		s.LastError = err.Error()
		m.dropConn(sc.Address)
		return s
	}
	s.Up = true
	switch {
	case s.Replicating || s.ReadOnly:
		s.Role = RoleReplica
	default:
		s.Role = RolePrimary
	}
	return s
}

func (m *Monitor) query(conn *client.Conn, s *Server) error {
	_ = conn.SetDeadline(time.Now().Add(m.cfg.Timeout))
	res, err := conn.Execute("SELECT @@read_only, @@server_id, @@version")
	if err != nil {
		return err
	}
	ro, _ := res.GetInt(0, 0)
	id, _ := res.GetUint(0, 1)
	s.Version, _ = res.GetString(0, 2)
	res.Close()
	s.ReadOnly, s.ServerID = ro != 0, uint32(id)
	res, err = conn.Execute("SHOW SLAVE STATUS")
	if err != nil {
		return err
	}
	defer res.Close()
	if res.RowNumber() > 0 {
		s.Replicating = true
		if v, err := res.GetStringByName(0, "Seconds_Behind_Master"); err == nil && v != "" {
			if secs, err := strconv.Atoi(v); err == nil {
				s.ReplicaLag = time.Duration(secs) * time.Second
			}
		}
	}
	return nil
}

func (m *Monitor) conn(ctx context.Context, addr string) (*client.Conn, error) {
	m.mu.Lock()
	c := m.conns[addr]
	m.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := client.ConnectWithContext(ctx, addr, m.cfg.User, m.cfg.Password, "", m.cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("connect %s as %s: %w", addr, m.cfg.User, err)
	}
	m.mu.Lock()
	m.conns[addr] = c
	m.mu.Unlock()
	return c, nil
}

func (m *Monitor) dropConn(addr string) {
	m.mu.Lock()
	c := m.conns[addr]
	delete(m.conns, addr)
	m.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

func (m *Monitor) closeConns() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for addr, c := range m.conns {
		c.Close()
		delete(m.conns, addr)
	}
}
