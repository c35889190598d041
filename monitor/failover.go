package monitor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
)

// topologyOps is the monitor's failover state, used only from the goroutine
// that runs Poll (and from Switchover, which holds opMu like Poll).
type topologyOps struct {
	lastPrimary string
	// lastPrimarySemiSync: the last primary seen up had semi-sync active.
	lastPrimarySemiSync bool
	primaryDownSince    time.Time
	// refused holds, per standalone server not rejoined because it has
	// diverged, the transaction the primary lacks: reported once.
	refused map[string]string
	// blocked is the last failover error that retrying cannot cure (a
	// missing privilege): reported once, then tried again only every
	// blockedRetry, until blockedUntil.
	blocked      string
	blockedUntil time.Time
}

// blockedRetry is how often a failover that failed for a missing privilege
// is tried again (a grant may have been added since).
const blockedRetry = time.Minute

// afterPoll acts on a fresh snapshot: fails over or rejoins.
func (m *Monitor) afterPoll(ctx context.Context, snap *Snapshot) {
	fc := m.cfg.Failover
	if p, ok := snap.PrimaryServer(); ok {
		m.ops.lastPrimary, m.ops.primaryDownSince = p.Name, time.Time{}
		m.ops.lastPrimarySemiSync = p.SemiSync
		if fc.AutoRejoin {
			m.rejoin(ctx, snap, p)
		}
		return
	}
	if m.ops.lastPrimary == "" || !fc.AutoFailover {
		return
	}
	if m.ops.primaryDownSince.IsZero() {
		m.ops.primaryDownSince = time.Now()
		m.event("primary_down", m.ops.lastPrimary, "no writable primary", nil)
		return
	}
	if time.Since(m.ops.primaryDownSince) < fc.Timeout {
		return
	}
	candidate := mostAdvancedReplica(snap)
	if candidate == nil {
		m.log.Error("failover impossible: no replica is up", "old_primary", m.ops.lastPrimary)
		return
	}
	if time.Now().Before(m.ops.blockedUntil) {
		return
	}
	if err := m.promote(ctx, snap, *candidate, ""); err != nil {
		if !isPrivilegeError(err) {
			m.log.Error("failover failed", "candidate", candidate.Name, "err", err)
			return
		}
		m.ops.blockedUntil = time.Now().Add(blockedRetry)
		if err.Error() != m.ops.blocked {
			m.ops.blocked = err.Error()
			fix := strings.Join(candidate.PrivilegeGaps, "; ")
			if fix == "" {
				fix = "grant service_user what the error names (the README lists what failover needs)"
			}
			m.log.Error("failover failed for a missing privilege: writes fail until it is granted; trying again every "+blockedRetry.String(),
				"candidate", candidate.Name, "err", err, "fix", fix)
			m.event("failover_blocked", candidate.Name, err.Error()+"; fix: "+fix, snap)
		}
		return
	}
	m.ops.blocked, m.ops.blockedUntil = "", time.Time{}
	reason := "primary " + m.ops.lastPrimary + " down for " + fc.Timeout.String()
	if !m.ops.lastPrimarySemiSync {
		reason += "; its replication was asynchronous, so commits it made just before going down may be missing on " +
			candidate.Name + " (semi-sync replication prevents that)"
	}
	m.event("failover", candidate.Name, reason, snap)
	m.ops.lastPrimary, m.ops.primaryDownSince = candidate.Name, time.Time{}
}

// mostAdvancedReplica is the up replica holding the most of the old
// primary's history, received if not yet applied (promote applies its relay
// log first): with semi-sync, the replica that acknowledged the last commit
// may not have applied it yet. A server in maintenance is never promoted.
func mostAdvancedReplica(snap *Snapshot) *Server {
	var best *Server
	var bestSeq uint64
	for i := range snap.Servers {
		s := &snap.Servers[i]
		if !s.Up || !s.Replicating || s.Maintenance {
			continue
		}
		seq := max(gtidSeq(s.GTIDPosition), gtidSeq(s.GTIDReceived))
		if best == nil || seq > bestSeq {
			best, bestSeq = s, seq
		}
	}
	return best
}

// gtidSeq sums the sequence numbers of a MariaDB GTID position
// ("0-1-100,1-1-7"): with one writer at a time it orders servers by how much
// of the primary's history they hold.
func gtidSeq(pos string) uint64 {
	var total uint64
	for _, g := range strings.Split(pos, ",") {
		if _, _, seq, ok := parseGTID(g); ok {
			total += seq
		}
	}
	return total
}

// promote makes target the primary and points every other up server that
// replicates (and oldPrimary, for a switchover) at it.
func (m *Monitor) promote(ctx context.Context, snap *Snapshot, target Server, oldPrimary string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := m.conn(ctx, target.Address)
	if err != nil {
		return err
	}
	if err := m.exec(conn, "STOP SLAVE IO_THREAD"); err != nil {
		return err
	}
	if err := m.waitRelayApplied(ctx, conn); err != nil {
		m.log.Warn("promoting before the relay log was fully applied", "server", target.Name, "err", err)
	}
	for _, q := range []string{"STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0"} {
		if err := m.exec(conn, q); err != nil {
			return fmt.Errorf("promote %s: %s: %w", target.Name, q, err)
		}
	}
	var errs []error
	for _, s := range snap.Servers {
		if s.Name == target.Name || !s.Up || (!s.Replicating && s.Name != oldPrimary) {
			continue
		}
		gtidMode := "slave_pos"
		if s.Name == oldPrimary {
			gtidMode = "current_pos" // its own writes are in its binlog, not in gtid_slave_pos
		}
		if err := m.pointAt(ctx, s, target, gtidMode); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pointAt makes s replicate from primary.
func (m *Monitor) pointAt(ctx context.Context, s, primary Server, gtidMode string) error {
	conn, err := m.conn(ctx, s.Address)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(primary.Address)
	fc := m.cfg.Failover
	change := fmt.Sprintf("CHANGE MASTER TO MASTER_HOST = '%s', MASTER_PORT = %s, MASTER_USER = '%s', MASTER_PASSWORD = '%s', MASTER_USE_GTID = %s",
		sqlEscape(host), port, sqlEscape(fc.ReplicationUser.User), sqlEscape(fc.ReplicationUser.Password), gtidMode)
	for _, q := range []string{"SET GLOBAL read_only = 1", "STOP SLAVE", change, "START SLAVE"} {
		if err := m.exec(conn, q); err != nil {
			if q == change {
				q = "CHANGE MASTER TO ..." // keep the password out of logs
			}
			return fmt.Errorf("point %s at %s: %s: %w", s.Name, primary.Name, q, err)
		}
	}
	return nil
}

// waitRelayApplied waits until the SQL thread has applied what the IO
// thread received.
func (m *Monitor) waitRelayApplied(ctx context.Context, conn *client.Conn) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		res, err := conn.Execute("SHOW SLAVE STATUS")
		if err != nil {
			return err
		}
		if res.RowNumber() == 0 {
			res.Close()
			return nil
		}
		read, _ := res.GetStringByName(0, "Read_Master_Log_Pos")
		exec, _ := res.GetStringByName(0, "Exec_Master_Log_Pos")
		rf, _ := res.GetStringByName(0, "Master_Log_File")
		ef, _ := res.GetStringByName(0, "Relay_Master_Log_File")
		caughtUp := read == exec && rf == ef // before Close recycles the buffer
		res.Close()
		if caughtUp {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// rejoin points standalone servers (up, not replicating, not the primary)
// at the primary.
func (m *Monitor) rejoin(ctx context.Context, snap *Snapshot, primary Server) {
	for _, s := range snap.Servers {
		if !s.Up || s.Replicating || s.Name == primary.Name {
			delete(m.ops.refused, s.Name)
			continue
		}
		extra, err := m.notOnPrimary(ctx, s, primary)
		if err != nil {
			m.log.Error("rejoin check failed", "server", s.Name, "primary", primary.Name, "err", err)
			continue
		}
		if extra != "" {
			if m.ops.refused[s.Name] != extra {
				if m.ops.refused == nil {
					m.ops.refused = map[string]string{}
				}
				m.ops.refused[s.Name] = extra
				m.event("rejoin_refused", s.Name, fmt.Sprintf("diverged: it holds transaction %s, which primary %s never had; "+
					"rebuild it from a backup of %s (mariadb-backup), or with semi-sync restart it with --init-rpl-role=SLAVE", extra, primary.Name, primary.Name), snap)
			}
			continue
		}
		if err := m.pointAt(ctx, s, primary, "current_pos"); err != nil {
			m.log.Error("rejoin failed", "server", s.Name, "primary", primary.Name, "err", err)
			continue
		}
		m.event("rejoin", s.Name, "standalone server pointed at primary "+primary.Name, snap)
	}
}

// notOnPrimary returns a MariaDB GTID of s's history that primary's binlog
// does not hold ("" when there is none): a server with such a transaction
// (an old primary that committed what no replica received) has diverged,
// and replicating from primary would fail or lose it. primary's
// gtid_binlog_state holds the last sequence number of each domain and
// server id it logged; s's last GTID of a (domain, server id) beyond that
// is not there.
func (m *Monitor) notOnPrimary(ctx context.Context, s, primary Server) (string, error) {
	if s.GTIDPosition == "" || strings.Contains(s.GTIDPosition, ":") {
		return "", nil // nothing written, or MySQL's GTIDs: MariaDB's check does not apply
	}
	conn, err := m.conn(ctx, primary.Address)
	if err != nil {
		return "", err
	}
	_ = conn.SetDeadline(time.Now().Add(m.cfg.Timeout))
	res, err := conn.Execute("SELECT @@GLOBAL.gtid_binlog_state")
	if err != nil {
		return "", fmt.Errorf("read gtid_binlog_state of %s: %w", primary.Name, err)
	}
	state, _ := res.GetString(0, 0)
	logged := map[[2]uint64]uint64{} // (domain, server id) -> last seq
	for _, g := range strings.Split(state, ",") {
		if d, srv, seq, ok := parseGTID(g); ok {
			logged[[2]uint64{d, srv}] = max(logged[[2]uint64{d, srv}], seq)
		}
	}
	res.Close()
	for _, g := range strings.Split(s.GTIDPosition, ",") {
		if d, srv, seq, ok := parseGTID(g); ok && logged[[2]uint64{d, srv}] < seq {
			return strings.TrimSpace(g), nil
		}
	}
	return "", nil
}

// parseGTID splits a MariaDB GTID, domain-server_id-seq.
func parseGTID(g string) (domain, server, seq uint64, ok bool) {
	parts := strings.Split(strings.TrimSpace(g), "-")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	var errs [3]error
	domain, errs[0] = strconv.ParseUint(parts[0], 10, 32)
	server, errs[1] = strconv.ParseUint(parts[1], 10, 32)
	seq, errs[2] = strconv.ParseUint(parts[2], 10, 64)
	return domain, server, seq, errs[0] == nil && errs[1] == nil && errs[2] == nil
}

// Switchover moves the primary role to target: the old primary turns read
// only, target catches up with it, is promoted, and the old primary and
// the other replicas follow target.
func (m *Monitor) Switchover(ctx context.Context, target string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	snap := m.Snapshot()
	old, ok := snap.PrimaryServer()
	if !ok {
		return errors.New("switchover: no primary to switch from")
	}
	var to *Server
	for i := range snap.Servers {
		if snap.Servers[i].Name == target {
			to = &snap.Servers[i]
		}
	}
	if to == nil || !to.Up || !to.Replicating || to.Broken {
		return fmt.Errorf("switchover: %q is not a healthy replica", target)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	oldConn, err := m.conn(ctx, old.Address)
	if err != nil {
		return err
	}
	// Withdraw the primary before it turns read only: sessions then wait
	// for the new one (router.primary_wait) instead of writing into
	// read_only errors. The next poll publishes what the servers say,
	// whether the switchover succeeded or not.
	withdrawn := *snap
	withdrawn.Primary = -1
	m.publish(&withdrawn)
	if err := m.exec(oldConn, "SET GLOBAL read_only = 1"); err != nil {
		return fmt.Errorf("switchover: make %s read only: %w", old.Name, err)
	}
	res, err := oldConn.Execute("SELECT @@gtid_binlog_pos")
	if err != nil {
		m.exec(oldConn, "SET GLOBAL read_only = 0")
		return err
	}
	p, _ := res.GetString(0, 0)
	pos := strings.Clone(p) // Close recycles the result's buffer
	res.Close()
	toConn, err := m.conn(ctx, to.Address)
	if err == nil {
		res, err = toConn.Execute(fmt.Sprintf("SELECT MASTER_GTID_WAIT('%s', 10)", sqlEscape(pos)))
		if err == nil {
			if v, _ := res.GetInt(0, 0); v != 0 {
				err = fmt.Errorf("%s did not reach %s within 10s", to.Name, pos)
			}
			res.Close()
		}
	}
	if err != nil {
		m.exec(oldConn, "SET GLOBAL read_only = 0")
		return fmt.Errorf("switchover aborted, %s stays primary: %w", old.Name, err)
	}
	old.Up = true
	if err := m.promote(ctx, snap, *to, old.Name); err != nil {
		return fmt.Errorf("switchover: %w", err)
	}
	m.event("switchover", to.Name, "from "+old.Name, snap)
	m.ops.lastPrimary = to.Name
	return nil
}

func (m *Monitor) exec(conn *client.Conn, q string) error {
	_ = conn.SetDeadline(time.Now().Add(m.cfg.Timeout))
	res, err := conn.Execute(q)
	if err == nil {
		res.Close()
	}
	return err
}

// event reports a change of topology.
func (m *Monitor) event(kind, server, reason string, snap *Snapshot) {
	m.log.Warn("topology event", "event", kind, "server", server, "reason", reason)
	m.events.WithLabelValues(kind).Inc()
	if m.OnEvent == nil {
		return
	}
	ev := Event{Kind: kind, Server: server, Reason: reason, At: time.Now()}
	if snap != nil {
		ev.Positions = map[string]string{}
		for _, s := range snap.Servers {
			ev.Positions[s.Name] = s.GTIDPosition
		}
	}
	m.OnEvent(ev)
}

// Event is a change of state the monitor made or saw. OnEvent must not block.
type Event struct {
	Kind   string `json:"event"`
	Server string `json:"server"`
	// From and To are the server's state before and after, for state changes.
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Reason string    `json:"reason"`
	At     time.Time `json:"ts"`
	// Positions are the servers' GTID positions at the time.
	Positions map[string]string `json:"gtid_positions,omitempty"`
}

func sqlEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s)
}
