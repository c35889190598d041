package proxy

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/router"
)

// With pooling a client knows its session by Sluice's id (the handshake's,
// and CONNECTION_ID()'s), while its statements run on whichever server
// thread is free. KILL [QUERY] id is therefore Sluice's: it finds the
// session, and kills the statement it is running on the server it runs on.

// running is the connection a session's statement is on, for KILL QUERY
// from another session. The lock keeps the connection the session's while
// a kill is sent: the statement killed is this session's, never that of
// whoever borrows the connection next.
type running struct {
	mu   sync.Mutex
	conn *BackendConn
}

func (r *running) set(b *BackendConn) {
	r.mu.Lock()
	r.conn = b
	r.mu.Unlock()
}

// killRequest is a parsed KILL statement.
type killRequest struct {
	id    uint32
	query bool // KILL QUERY: the statement only, not the session
}

// parseKill reads KILL [HARD | SOFT] [CONNECTION | QUERY] [ID] id.
func parseKill(text string) (killRequest, bool) {
	fields := strings.Fields(strings.TrimRight(strings.TrimSpace(text), ";"))
	if len(fields) < 2 || !strings.EqualFold(fields[0], "KILL") {
		return killRequest{}, false
	}
	var k killRequest
	rest := fields[1:]
	if len(rest) > 1 && (strings.EqualFold(rest[0], "HARD") || strings.EqualFold(rest[0], "SOFT")) {
		rest = rest[1:]
	}
	if len(rest) > 1 && (strings.EqualFold(rest[0], "QUERY") || strings.EqualFold(rest[0], "CONNECTION")) {
		k.query = strings.EqualFold(rest[0], "QUERY")
		rest = rest[1:]
	}
	if len(rest) > 1 && strings.EqualFold(rest[0], "ID") {
		rest = rest[1:]
	}
	if len(rest) != 1 {
		return killRequest{}, false
	}
	id, err := strconv.ParseUint(rest[0], 10, 32)
	if err != nil {
		return killRequest{}, false
	}
	k.id = uint32(id)
	return k, true
}

// session finds a live session by id.
func (s *Server) session(id uint32) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sess := range s.sessions {
		if sess.id == id {
			return sess
		}
	}
	return nil
}

// kill runs KILL [QUERY] id with pooling. A statement running is killed on
// its server, by a KILL QUERY sent as this session's user, so the server
// decides whether this user may (its own threads, or CONNECTION ADMIN);
// the client gets the server's answer. A session of the same user that is
// idle has nothing to kill but its connection.
func (p *processor) kill(ctx context.Context, k killRequest) error {
	target := p.srv.session(k.id)
	if target == nil {
		p.client.SendError(newSQLError(mysql.ER_NO_SUCH_THREAD, "Unknown thread id: %d", k.id))
		return nil
	}
	tp := &target.proc
	answered := false
	if tp != p {
		tp.running.mu.Lock()
		b := tp.running.conn
		tp.running.mu.Unlock()
		if b != nil {
			var err error
			if answered, err = p.killOn(ctx, tp, b); err != nil || answered && p.rec.res.Err != nil {
				return err // the server's refusal went to the client
			}
		}
	}
	if tp.user != p.user && !answered {
		p.client.SendError(newSQLError(mysql.ER_KILL_DENIED_ERROR, "You are not owner of thread %d", k.id))
		return nil
	}
	if !k.query {
		p.srv.closeSession(target)
	}
	if !answered {
		return p.client.Send(okPacket(0, 0, p.status, 0))
	}
	return nil
}

// killOn kills the statement tp runs on b, from one of this session's
// connections to b's server, and relays the server's answer; answered is
// false when the statement ended first or no connection was to be had.
func (p *processor) killOn(ctx context.Context, tp *processor, b *BackendConn) (answered bool, err error) {
	t, ok := p.srv.router.Server(b.Server)
	if !ok {
		return false, nil // the server is gone, and the statement with it
	}
	own, err := p.backends.conn(ctx, t)
	if err != nil {
		return false, nil
	}
	tp.running.mu.Lock()
	defer tp.running.mu.Unlock()
	if tp.running.conn != b {
		return false, nil // done: its connection may be someone else's now
	}
	kill := commandPacket(mysql.COM_QUERY, "KILL QUERY "+strconv.FormatUint(uint64(b.ConnID()), 10))
	_, _, err = p.forwardCommand(ctx, &command{pkt: kill}, own, p.primaryConn)
	return true, err
}

// closeSession ends a session from outside: its client connection closes,
// and its loop ends at its next read.
func (s *Server) closeSession(sess *Session) {
	s.mu.Lock()
	conn := s.sessions[sess]
	s.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// isKill reports whether a statement is a KILL Sluice answers itself.
func isKill(st *router.Statement) bool { return st.Keyword == "KILL" }
