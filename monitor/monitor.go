// Package monitor knows what each server is now: reachable or not, primary
// or replica, whether its replication works and how far behind it is. It
// polls every server on its own service connections and publishes an
// immutable Snapshot that readers load without locks.
package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/prometheus/client_golang/prometheus"
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
	// GTIDPosition is gtid_current_pos (MariaDB) or gtid_executed (MySQL).
	GTIDPosition string
	// SemiSync: semi-synchronous replication is active on the server. On
	// a primary its commits wait for a replica's acknowledgement, so a
	// failover loses none of them; on a replica, it acknowledges.
	SemiSync bool
	// GTIDReceived is what a MariaDB replica's IO thread has received
	// (Gtid_IO_Pos), applied or not: failover ranks candidates by it.
	GTIDReceived string

	// Replicating is true when the server has a replication source.
	Replicating bool
	// SourceAddress is the host:port it replicates from.
	SourceAddress string
	// IORunning and SQLRunning are the replication threads' states.
	IORunning, SQLRunning bool
	// Broken: a replication thread stopped or failed, or the lag is unknown.
	Broken bool
	// ReplicaLag is the replica's delay: from the heartbeat table when
	// enabled (millisecond resolution), else Seconds_Behind_Master; negative
	// when unknown.
	ReplicaLag time.Duration
	// Lagging: ReplicaLag went over MaxLag and has not yet come back under
	// the hysteresis mark. A lagging replica gets no reads.
	Lagging bool
	// Galera: wsrep_local_state (4 = Synced), wsrep_local_index and
	// whether the node is in the primary component.
	GaleraState   int
	GaleraIndex   int
	GaleraPrimary bool
	LastError     string
	// PrivilegeGaps says which enabled feature lacks which privilege of
	// service_user on this server, with the GRANT that fixes it.
	PrivilegeGaps []string
	CheckedAt     time.Time
	// RoundTrip is how long the monitor's first query took to answer (0
	// when the server did not).
	RoundTrip time.Duration
	// Maintenance: an operator drained the server; it gets no new reads.
	Maintenance bool
}

// State names a server's condition in one word: down, primary, replica,
// broken, lagging, maintenance or unknown.
func (s Server) State() string {
	switch {
	case s.CheckedAt.IsZero():
		return string(RoleUnknown)
	case s.Maintenance:
		return "maintenance"
	case !s.Up:
		return string(RoleDown)
	case s.Role == RoleReplica && s.Broken:
		return "broken"
	case s.Role == RoleReplica && s.Lagging:
		return "lagging"
	}
	return string(s.Role)
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

// Monitor polls the servers. Create it with New and run it with Run.
type Monitor struct {
	cfg     Config
	log     *slog.Logger
	current atomic.Pointer[Snapshot]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every publish
	conns   map[string]*client.Conn
	// gaps holds, per server address, what service_user lacks there for
	// the enabled features (privileges.go): read once per connection,
	// dropped with it (guarded by mu).
	gaps map[string][]string
	// lastBeat is the heartbeat value last written on the primary.
	lastBeat atomic.Int64
	// maintenance names servers an operator drained (guarded by mu).
	maintenance map[string]bool
	// opMu serializes polls with switchovers; ops is failover state.
	opMu sync.Mutex
	ops  topologyOps
	// OnEvent, if set before Run, hears of every topology event.
	OnEvent func(Event)
	events  *prometheus.CounterVec
}

// New builds a monitor; its first snapshot knows nothing yet.
func New(cfg Config, log *slog.Logger) *Monitor {
	cfg = cfg.WithDefaults()
	m := &Monitor{cfg: cfg, log: log, changed: make(chan struct{}), conns: map[string]*client.Conn{},
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_monitor_events_total", Help: "Topology events: state changes, failovers, rejoins, switchovers.",
		}, []string{"event"})}
	servers := make([]Server, len(cfg.Servers))
	for i, s := range cfg.Servers {
		servers[i] = Server{Name: s.Name, Address: s.Address, Weight: s.Weight, Role: RoleUnknown, ReplicaLag: -1}
	}
	m.current.Store(&Snapshot{Servers: servers, Primary: -1})
	return m
}

// SetServers replaces the servers polled, after a config reload: added
// servers are polled from the next poll on, removed ones are forgotten and
// their monitoring connections closed. It returns once the new list has
// been polled.
func (m *Monitor) SetServers(ctx context.Context, servers []ServerConfig) {
	m.opMu.Lock()
	keep := map[string]bool{}
	for _, s := range servers {
		keep[s.Address] = true
	}
	m.cfg.Servers = append([]ServerConfig(nil), servers...)
	m.mu.Lock()
	for addr, c := range m.conns {
		if !keep[addr] {
			c.Close()
			delete(m.conns, addr)
		}
	}
	clear(m.gaps) // read again: a reload may have come with new grants
	m.mu.Unlock()
	m.opMu.Unlock()
	m.Poll(ctx)
}

// SetMaintenance drains a server (on) or returns it to service (off). A
// server in maintenance gets no new reads; the sessions' connections to it
// are left alone until they next choose a replica. The primary cannot be
// drained: switch over first. The new state is published before it returns.
func (m *Monitor) SetMaintenance(ctx context.Context, name string, on bool) error {
	known := false
	m.opMu.Lock()
	for _, s := range m.cfg.Servers {
		known = known || s.Name == name
	}
	m.opMu.Unlock()
	if !known {
		return fmt.Errorf("no server named %q in the config", name)
	}
	if p, ok := m.Snapshot().PrimaryServer(); ok && on && p.Name == name {
		return fmt.Errorf("%s is the primary: switch over to another server first (POST /v1/switchover?to=NAME)", name)
	}
	m.mu.Lock()
	if m.maintenance == nil {
		m.maintenance = map[string]bool{}
	}
	if on {
		m.maintenance[name] = true
	} else {
		delete(m.maintenance, name)
	}
	m.mu.Unlock()
	m.Poll(ctx)
	return nil
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
	m.opMu.Lock()
	defer m.opMu.Unlock()
	prev := m.Snapshot()
	servers := make([]Server, len(m.cfg.Servers))
	var wg sync.WaitGroup
	for i, sc := range m.cfg.Servers {
		wg.Go(func() { servers[i] = m.check(ctx, sc) })
	}
	wg.Wait()
	m.mu.Lock()
	for i := range servers {
		servers[i].Maintenance = m.maintenance[servers[i].Name]
	}
	m.mu.Unlock()
	primary := -1
	if m.cfg.Type == "galera" {
		primary = galeraRoles(servers, m.cfg.PreferredWriter)
	} else {
		primary = primaryOf(servers)
	}
	snap := &Snapshot{Servers: servers, Primary: primary, At: time.Now()}
	for i := range servers {
		s := &servers[i]
		if snap.Primary < 0 && s.Replicating && s.SQLRunning && !s.IORunning {
			// The primary is gone, so the IO thread cannot connect: the
			// replica holds all it could get and may serve reads as is.
			s.Broken, s.ReplicaLag = false, 0
		}
		if i != snap.Primary && s.Role == RolePrimary {
			// Writable but not the one the replicas follow.
			s.Role, s.LastError = RoleUnknown, "writable, but not the server the replicas follow"
		}
		if s.Role == RoleReplica {
			m.judgeLag(s, prev)
		}
	}
	snapForEvents := &Snapshot{Servers: servers}
	prevState := make(map[string]string, len(prev.Servers))
	for _, p := range prev.Servers {
		prevState[p.Name] = p.State()
	}
	for i := range servers {
		from, known := prevState[servers[i].Name]
		if !known {
			from = string(RoleUnknown) // added by a reload
		}
		if to := servers[i].State(); from != to {
			m.log.Info("server state changed", "server", servers[i].Name, "from", from, "to", to,
				"lag", servers[i].ReplicaLag, "error", servers[i].LastError)
			m.events.WithLabelValues("state_change").Inc()
			if m.OnEvent != nil {
				ev := Event{Kind: "state_change", Server: servers[i].Name, From: from, To: to,
					Reason: servers[i].LastError, At: time.Now(), Positions: map[string]string{}}
				for _, s := range snapForEvents.Servers {
					ev.Positions[s.Name] = s.GTIDPosition
				}
				m.OnEvent(ev)
			}
		}
	}
	if p, ok := snap.PrimaryServer(); ok && m.cfg.Heartbeat && m.cfg.Type != "galera" {
		m.beat(ctx, p)
	}
	m.publish(snap)
	if m.cfg.Type != "galera" {
		m.afterPoll(ctx, snap)
	}
}

// galeraRoles makes one synced node the writer and the other synced nodes
// readers; nodes not synced in the primary component serve nothing.
func galeraRoles(servers []Server, preferred string) int {
	writer := -1
	for i := range servers {
		s := &servers[i]
		if !s.Up {
			continue
		}
		synced := s.GaleraState == 4 && s.GaleraPrimary
		s.Role, s.Broken, s.ReplicaLag = RoleReplica, !synced, 0
		if !synced {
			s.LastError = fmt.Sprintf("galera node not synced (wsrep_local_state %d)", s.GaleraState)
			continue
		}
		switch {
		case writer < 0, s.Name == preferred,
			servers[writer].Name != preferred && s.GaleraIndex < servers[writer].GaleraIndex:
			writer = i
		}
	}
	if writer >= 0 {
		servers[writer].Role = RolePrimary
	}
	return writer
}

// primaryOf picks the primary: the writable server, and when several are
// writable, the one most replicas follow.
func primaryOf(servers []Server) int {
	best, bestScore := -1, -1
	for i, s := range servers {
		if !s.Up || s.ReadOnly {
			continue
		}
		score := 0
		for _, r := range servers {
			if r.Replicating && sameAddress(r.SourceAddress, s.Address) {
				score += 2
			}
		}
		if !s.Replicating {
			score++
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

func sameAddress(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	norm := func(h string) string {
		if h == "localhost" || h == "::1" {
			return "127.0.0.1"
		}
		return h
	}
	return norm(ah) == norm(bh)
}

// judgeLag sets Lagging with hysteresis, so a replica hovering at the limit
// does not flap in and out of the read pool.
func (m *Monitor) judgeLag(s *Server, prev *Snapshot) {
	if m.cfg.MaxLag <= 0 || s.ReplicaLag < 0 {
		return
	}
	wasLagging := false
	for _, p := range prev.Servers {
		if p.Name == s.Name {
			wasLagging = p.Lagging
		}
	}
	limit := m.cfg.MaxLag
	if wasLagging {
		limit = time.Duration(float64(m.cfg.MaxLag) * m.cfg.LagHysteresis)
	}
	s.Lagging = s.ReplicaLag > limit || (wasLagging && s.ReplicaLag >= limit)
}

// publish makes snap the current snapshot and wakes whoever waits on
// Changed.
func (m *Monitor) publish(snap *Snapshot) {
	m.current.Store(snap)
	m.mu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// Changed is closed at the monitor's next publish of a snapshot (every
// poll).
func (m *Monitor) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// WaitPrimary waits until a primary is known or ctx ends.
func (m *Monitor) WaitPrimary(ctx context.Context) (Server, error) {
	for {
		ch := m.Changed()
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
	s.PrivilegeGaps = m.privilegeGaps(conn, sc)
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
	start := time.Now()
	res, err := conn.Execute("SELECT @@read_only, @@server_id, @@version")
	if err != nil {
		return err
	}
	s.RoundTrip = time.Since(start)
	ro, _ := res.GetInt(0, 0)
	id, _ := res.GetUint(0, 1)
	// go-mysql's strings point into a pooled buffer that Close hands back:
	// copy what outlives the result.
	v, _ := res.GetString(0, 2)
	s.Version = strings.Clone(v)
	res.Close()
	s.ReadOnly, s.ServerID = ro != 0, uint32(id)
	if m.cfg.Type == "galera" {
		return m.queryGalera(conn, s)
	}
	// The GTID position, and whether semi-sync replication is active, in
	// one round trip: MariaDB's names, then MySQL's (8.0.26+ and before).
	gtidQuery := "SELECT @@gtid_executed, (SELECT GROUP_CONCAT(VARIABLE_VALUE) FROM performance_schema.global_status " +
		"WHERE VARIABLE_NAME IN ('Rpl_semi_sync_source_status', 'Rpl_semi_sync_replica_status', " +
		"'Rpl_semi_sync_master_status', 'Rpl_semi_sync_slave_status'))"
	if strings.Contains(s.Version, "MariaDB") {
		gtidQuery = "SELECT @@gtid_current_pos, (SELECT GROUP_CONCAT(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS " +
			"WHERE VARIABLE_NAME IN ('RPL_SEMI_SYNC_MASTER_STATUS', 'RPL_SEMI_SYNC_SLAVE_STATUS'))"
	}
	if res, err = conn.Execute(gtidQuery); err != nil {
		// MySQL without performance_schema: the position alone.
		res, err = conn.Execute("SELECT @@gtid_executed, ''")
	}
	if err == nil {
		pos, _ := res.GetString(0, 0)
		semi, _ := res.GetString(0, 1)
		s.GTIDPosition, s.SemiSync = strings.Clone(pos), strings.Contains(semi, "ON")
		res.Close()
	}
	// SHOW REPLICA STATUS on MySQL 8.0.22+ and MariaDB 10.5+; SHOW SLAVE
	// STATUS before. Column names differ between MySQL's two forms.
	res, err = conn.Execute("SHOW REPLICA STATUS")
	if err != nil {
		if res, err = conn.Execute("SHOW SLAVE STATUS"); err != nil {
			return err
		}
	}
	defer res.Close()
	if res.RowNumber() == 0 {
		return nil
	}
	col := func(names ...string) (string, bool) {
		for _, n := range names {
			if v, err := res.GetStringByName(0, n); err == nil {
				return v, true
			}
		}
		return "", false
	}
	s.Replicating = true
	io, _ := col("Slave_IO_Running", "Replica_IO_Running")
	sql, _ := col("Slave_SQL_Running", "Replica_SQL_Running")
	s.IORunning, s.SQLRunning = io == "Yes", sql == "Yes"
	if v, ok := col("Gtid_IO_Pos"); ok {
		s.GTIDReceived = strings.Clone(v)
	}
	host, _ := col("Master_Host", "Source_Host")
	port, _ := col("Master_Port", "Source_Port")
	s.SourceAddress = net.JoinHostPort(host, port)
	if e, _ := col("Last_IO_Error"); e != "" {
		s.LastError = "IO thread: " + e
	}
	if e, _ := col("Last_SQL_Error"); e != "" {
		s.LastError = "SQL thread: " + e
	}
	if v, ok := col("Seconds_Behind_Master", "Seconds_Behind_Source"); ok && v != "" {
		if secs, err := strconv.Atoi(v); err == nil {
			s.ReplicaLag = time.Duration(secs) * time.Second
		}
	}
	s.Broken = !s.IORunning || !s.SQLRunning || s.ReplicaLag < 0
	if !s.Broken && m.cfg.Heartbeat {
		if lag, ok := m.heartbeatLag(conn); ok {
			s.ReplicaLag = lag
		}
	}
	return nil
}

// queryGalera reads a Galera node's state.
func (m *Monitor) queryGalera(conn *client.Conn, s *Server) error {
	res, err := conn.Execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_local_index', 'wsrep_cluster_status', 'wsrep_ready')")
	if err != nil {
		return err
	}
	defer res.Close()
	ready := false
	for i := range res.RowNumber() {
		name, _ := res.GetString(i, 0)
		value, _ := res.GetString(i, 1)
		switch name {
		case "wsrep_local_state":
			s.GaleraState, _ = strconv.Atoi(value)
		case "wsrep_local_index":
			s.GaleraIndex, _ = strconv.Atoi(value)
		case "wsrep_cluster_status":
			s.GaleraPrimary = value == "Primary"
		case "wsrep_ready":
			ready = value == "ON"
		}
	}
	if !ready {
		// Synced can show before the node accepts queries.
		s.GaleraPrimary = false
	}
	return nil
}

// beat writes the heartbeat on the primary: the monitor's own clock, in
// microseconds, so reading it back needs no clock agreement between servers.
func (m *Monitor) beat(ctx context.Context, p Server) {
	conn, err := m.conn(ctx, p.Address)
	if err != nil {
		return
	}
	_ = conn.SetDeadline(time.Now().Add(m.cfg.Timeout))
	now := time.Now().UnixMicro()
	table := m.cfg.HeartbeatTable
	if _, err := conn.Execute(fmt.Sprintf("REPLACE INTO %s (id, ts) VALUES (1, %d)", table, now)); err != nil {
		db, _, _ := strings.Cut(table, ".")
		_, err1 := conn.Execute("CREATE DATABASE IF NOT EXISTS " + db)
		_, err2 := conn.Execute("CREATE TABLE IF NOT EXISTS " + table + " (id INT PRIMARY KEY, ts BIGINT NOT NULL)")
		if err1 != nil || err2 != nil {
			m.log.Warn("cannot write the heartbeat; lag falls back to Seconds_Behind_Master",
				"table", table, "err", err, "fix", "grant the service user ALL on the heartbeat table's database")
			return
		}
		if _, err := conn.Execute(fmt.Sprintf("REPLACE INTO %s (id, ts) VALUES (1, %d)", table, now)); err != nil {
			return
		}
	}
	m.lastBeat.Store(now)
}

// heartbeatLag is how long ago the newest heartbeat a replica has applied
// was written; zero when it has the latest one.
func (m *Monitor) heartbeatLag(conn *client.Conn) (time.Duration, bool) {
	last := m.lastBeat.Load()
	if last == 0 {
		return 0, false
	}
	res, err := conn.Execute("SELECT ts FROM " + m.cfg.HeartbeatTable + " WHERE id = 1")
	if err != nil || res.RowNumber() == 0 {
		return 0, false
	}
	defer res.Close()
	ts, err := res.GetInt(0, 0)
	if err != nil {
		return 0, false
	}
	if ts >= last {
		return 0, true
	}
	return time.Since(time.UnixMicro(ts)), true
}

func (m *Monitor) conn(ctx context.Context, addr string) (*client.Conn, error) {
	m.mu.Lock()
	c := m.conns[addr]
	m.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := ServiceConnect(ctx, addr, m.cfg.User, m.cfg.Password, m.cfg.Timeout, m.cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("connect %s as %s: %w", addr, m.cfg.User, err)
	}
	m.mu.Lock()
	if existing := m.conns[addr]; existing != nil {
		m.mu.Unlock()
		c.Close()
		return existing, nil
	}
	m.conns[addr] = c
	m.mu.Unlock()
	return c, nil
}

func (m *Monitor) dropConn(addr string) {
	m.mu.Lock()
	c := m.conns[addr]
	delete(m.conns, addr)
	delete(m.gaps, addr)
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

var (
	serverUpDesc      = prometheus.NewDesc("sluice_server_up", "1 when the server answers the monitor.", []string{"server"}, nil)
	serverPrimaryDesc = prometheus.NewDesc("sluice_server_primary", "1 for the server writes go to.", []string{"server"}, nil)
	serverUsableDesc  = prometheus.NewDesc("sluice_server_readable", "1 for a replica that gets reads (not broken, not lagging).", []string{"server"}, nil)
	serverLagDesc     = prometheus.NewDesc("sluice_server_replica_lag_seconds", "Replica lag; absent while unknown (the server is down, not replicating, or its replication is broken).", []string{"server"}, nil)
	serverRTTDesc     = prometheus.NewDesc("sluice_server_round_trip_seconds", "How long the server took to answer the monitor's last probe query; absent while it is down.", []string{"server"}, nil)
)

// Describe implements prometheus.Collector: each server's state and lag,
// read from the latest snapshot at scrape time, and the event counts.
func (m *Monitor) Describe(ch chan<- *prometheus.Desc) {
	ch <- serverUpDesc
	ch <- serverPrimaryDesc
	ch <- serverUsableDesc
	ch <- serverLagDesc
	ch <- serverRTTDesc
	m.events.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Monitor) Collect(ch chan<- prometheus.Metric) {
	snap := m.Snapshot()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for i, s := range snap.Servers {
		ch <- prometheus.MustNewConstMetric(serverUpDesc, prometheus.GaugeValue, b(s.Up), s.Name)
		ch <- prometheus.MustNewConstMetric(serverPrimaryDesc, prometheus.GaugeValue, b(i == snap.Primary), s.Name)
		ch <- prometheus.MustNewConstMetric(serverUsableDesc, prometheus.GaugeValue, b(s.Up && s.Role == RoleReplica && !s.Broken && !s.Lagging), s.Name)
		if s.Up && s.Replicating && s.ReplicaLag >= 0 {
			ch <- prometheus.MustNewConstMetric(serverLagDesc, prometheus.GaugeValue, s.ReplicaLag.Seconds(), s.Name)
		}
		if s.Up {
			ch <- prometheus.MustNewConstMetric(serverRTTDesc, prometheus.GaugeValue, s.RoundTrip.Seconds(), s.Name)
		}
	}
	m.events.Collect(ch)
}
