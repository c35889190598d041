package proxy

import (
	"github.com/go-mysql-org/go-mysql/mysql"
	"strconv"

	"github.com/sluice-proxy/sluice/filter"
	"github.com/sluice-proxy/sluice/router"
)

// errFilterDenied is MySQL's ER_TABLEACCESS_DENIED_ERROR, with SQLSTATE 42000:
// drivers treat it as a statement error, not a lost connection or login.
const errFilterDenied = mysql.ER_TABLEACCESS_DENIED_ERROR

// statement reads the SQL of a COM_QUERY or COM_STMT_PREPARE packet: its
// fingerprint and class, then the filters. A filter's rewrite comes back as
// the text and the packet to send; denied means a filter has answered the
// client and the statement goes nowhere.
func (p *processor) statement(pkt []byte) (text string, out []byte, st router.Statement, cl *router.Class, denied bool) {
	text = string(pkt[1:])
	st = p.lexer.Lex(text)
	cl, hit := p.srv.classifier.Classify(&st, text)
	p.srv.metrics.classified(hit)
	filtered, d := p.filterStatement(text, &st, &cl)
	switch {
	case d != nil:
		return "", nil, st, nil, true
	case cl.ConnectionID && p.pooling():
		// With pooling the server's thread changes under the session:
		// CONNECTION_ID() is the session's own id, which KILL takes.
		sent := router.ReplaceCall(filtered, "CONNECTION_ID", strconv.FormatUint(uint64(p.sessionID), 10), st.NoBackslashEscapes)
		return filtered, commandPacket(pkt[0], sent), st, cl, false
	case filtered != text:
		return filtered, commandPacket(pkt[0], filtered), st, cl, false
	}
	return text, pkt, st, cl, false
}

// filterStatement runs the filter chain over a statement before routing. On
// a rewrite it returns the new text with st and cl describing it; on a
// refusal it has answered the client and returns the refusal.
func (p *processor) filterStatement(text string, st *router.Statement, cl **router.Class) (string, *filter.Denied) {
	chain := p.srv.filters.Load()
	if chain.Len() == 0 {
		return text, nil
	}
	fs := filter.Statement{User: p.user, DB: p.state.db, Text: text, Fingerprint: st.Fingerprint,
		Digest: st.Digest, Kinds: (*cl).Kinds, Tables: (*cl).Tables}
	rewritten, denied := chain.Before(&fs, func(fs *filter.Statement) {
		*st = p.lexer.Lex(fs.Text)
		c, hit := p.srv.classifier.Classify(st, fs.Text)
		p.srv.metrics.classified(hit)
		*cl = c
		fs.Fingerprint, fs.Digest, fs.Kinds, fs.Tables = st.Fingerprint, st.Digest, c.Kinds, c.Tables
	})
	if denied != nil && denied.DetectOnly {
		p.srv.metrics.filterDetected.Inc()
		p.log.Warn("a filter would refuse this statement (detect mode)", "filter", denied.Filter, "reason", denied.Reason, "fingerprint", st.Fingerprint)
		p.rec.detected = denied.Filter + ": " + denied.Reason
		denied = nil
	}
	if denied != nil {
		p.srv.metrics.filterDenied.Inc()
		p.log.Warn("statement refused by a filter", "filter", denied.Filter, "reason", denied.Reason, "fingerprint", st.Fingerprint)
		e := newSQLError(errFilterDenied, "%s", denied.Error())
		p.client.SendError(e)
		p.rec.setStmt(st, text)
		p.rec.refused = "refused: filter " + denied.Filter
		p.rec.res = Result{Err: e}
		return text, denied
	}
	if rewritten {
		p.srv.metrics.filterRewritten.Inc()
		p.rec.original = text
		return fs.Text, nil
	}
	return text, nil
}
