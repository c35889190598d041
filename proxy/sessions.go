package proxy

import (
	"slices"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/internal/digest"
)

// SessionInfo is what the admin API shows of one client session.
type SessionInfo struct {
	ID            uint32    `json:"id"`
	User          string    `json:"user"`
	Client        string    `json:"client"`
	DB            string    `json:"db"`
	Started       time.Time `json:"started"`
	Statements    int64     `json:"statements"`
	InTransaction bool      `json:"in_transaction"`
	Idle          bool      `json:"idle"`
	// Backends are the servers the session has connections to.
	Backends []string `json:"backends"`
	// Pinned says why every statement goes to the primary, when it does.
	Pinned string `json:"pinned,omitempty"`
	// Holds says why the session keeps its pooled connections between
	// statements, when it does (pool.mode multiplex or idle).
	Holds string `json:"holds,omitempty"`
}

// Stats are the proxy's running totals, for the console's live figures.
type Stats struct {
	Sessions int    `json:"sessions"`
	Commands uint64 `json:"commands_total"`
}

// Stats reads the running totals.
func (s *Server) Stats() Stats {
	return Stats{Sessions: s.Sessions(), Commands: s.commandsTotal.Load()}
}

// SetDigests sets (or with nil, removes) the statement digest table.
func (s *Server) SetDigests(d *digest.Table) { s.digests.Store(d) }

// Digests is the statement digest table (nil when disabled).
func (s *Server) Digests() *digest.Table { return s.digests.Load() }

// SessionList describes the sessions open now, oldest first.
func (s *Server) SessionList() []SessionInfo {
	s.mu.Lock()
	out := make([]SessionInfo, 0, len(s.sessions))
	for sess := range s.sessions {
		v := sess.view.Load()
		if v == nil {
			continue // still logging in
		}
		info := *v
		info.Statements = sess.statementCount.Load()
		info.Idle = sess.idle.Load()
		out = append(out, info)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SessionInfo) int { return int(a.ID) - int(b.ID) })
	return out
}

// publish updates what the admin API sees of the session when it changed;
// the session's own fields belong to its goroutine.
func (s *Session) publish() {
	p := &s.proc
	inTx := p.status&mysql.SERVER_STATUS_IN_TRANS != 0
	bs := &p.backends
	backends := bs.count()
	holds := ""
	if p.hold != released && p.hold != holdPoolOff && backends > 0 {
		holds = p.hold.String()
	}
	if v := s.view.Load(); v != nil && v.User == s.user && v.DB == p.state.db && v.InTransaction == inTx &&
		len(v.Backends) == backends && v.Pinned == p.pinned && v.Holds == holds {
		return
	}
	info := &SessionInfo{ID: s.id, User: s.user, Client: s.clientAddr.String(), DB: p.state.db,
		Started: s.started, InTransaction: inTx, Pinned: p.pinned, Holds: holds, Backends: make([]string, 0, backends)}
	if bs.primary != nil {
		info.Backends = append(info.Backends, bs.primary.Server)
	}
	for name := range bs.replicas {
		info.Backends = append(info.Backends, name)
	}
	slices.Sort(info.Backends[min(1, len(info.Backends)):])
	s.view.Store(info)
}
