package proxy

import (
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/router"
)

// queryRecord is what the query log and the digests need of one answered
// command. It only describes; nothing in it steers execution.
type queryRecord struct {
	server string
	res    Result
	// stmt is valid with hasStmt; held by value, so that recording it
	// allocates nothing.
	stmt    router.Statement
	hasStmt bool
	text    string
	// refused, when set, is the route label of a statement a filter
	// refused.
	refused string
	// routed, toPrimary, reason and detail make the route label, built only
	// when the query log asks; detail is what ReasonClass and ReasonPinned
	// stand for.
	routed    bool
	toPrimary bool
	reason    router.Reason
	detail    string
	// original is the client's text when a filter rewrote it.
	original string
	// detected says which detect-only filter would have refused it, and why.
	detected string
	// params are an execute's parameters, when the query log wants them.
	params []audit.Param
	// gtid is the GTID the statement committed, when known.
	gtid string
}

// setRoute records where the statement went and why.
func (r *queryRecord) setRoute(toPrimary bool, reason router.Reason, detail string) {
	r.routed, r.toPrimary, r.reason, r.detail = true, toPrimary, reason, detail
}

// setStmt records the statement being answered.
func (r *queryRecord) setStmt(st *router.Statement, text string) {
	r.stmt, r.hasStmt, r.text = *st, true, text
}

// routeLabelCache is the last route label a session logged: most commands
// of a session go the same way for the same reason, so the label is kept
// rather than built again per record.
type routeLabelCache struct {
	label, reason string
	toPrimary     bool
}

// routeLabel is the query log's route field.
func (s *Session) routeLabel(r *queryRecord) string {
	if r.refused != "" || !r.routed {
		return r.refused
	}
	reason := r.reason.Text(r.detail)
	l := &s.lastRoute
	if l.label == "" || l.toPrimary != r.toPrimary || l.reason != reason {
		*l = routeLabelCache{router.Label(r.toPrimary, reason), reason, r.toPrimary}
	}
	return l.label
}

// logSession is the session as the query log names it.
func (s *Session) logSession() *audit.Session {
	if s.logSess.ID == 0 {
		s.logSess = audit.Session{ID: s.id, Client: s.clientAddr.String()}
	}
	s.logSess.User, s.logSess.DB = s.user, s.proc.state.db
	return &s.logSess
}

// logCommand writes the query log record of one answered command.
func (s *Session) logCommand(g *audit.Genlog, cmd byte, pkt []byte, start time.Time, took time.Duration) {
	r := &s.proc.rec
	q := audit.Query{
		Start: start, Duration: took, Command: commandName(cmd),
		Server: r.server, Route: s.routeLabel(r), Rows: r.res.Rows, Affected: r.res.OK.Affected,
		LastInsertID: r.res.OK.LastInsertID, Warnings: r.res.OK.Warnings,
		InTx: s.proc.status&mysql.SERVER_STATUS_IN_TRANS != 0,
	}
	if e := r.res.Err; e != nil {
		q.ErrorCode, q.Error = e.Code, e.Message
	}
	switch {
	case r.hasStmt:
		q.Text, q.Original, q.Fingerprint, q.Digest = r.text, r.original, r.stmt.Fingerprint, r.stmt.Digest
		q.Detected, q.Params, q.GTID = r.detected, r.params, r.gtid
		q.RowsChecksum, q.RowsChecked = r.res.RowsChecksum, r.res.RowsChecked
		q.Sensitive = audit.IsSensitive(r.stmt.Keyword, r.stmt.Fingerprint, r.text, r.stmt.Multi)
		if rd := g.Redaction(); rd != nil && !q.Sensitive {
			s.redact(rd, &q)
		}
	case cmd == mysql.COM_INIT_DB || cmd == mysql.COM_FIELD_LIST:
		q.Text = string(pkt[1:])
	}
	g.LogQuery(s.logSession(), &q)
}
