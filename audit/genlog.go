package audit

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Genlog writes one JSON record per query and per login, keyed by session so
// that a session's records stay in order in one partition.
type Genlog struct {
	cfg  atomic.Pointer[Config]
	sink Sink
	// second caches the date and time of the last second a record was
	// stamped in: thousands of records a second share it.
	second atomic.Pointer[stampedSecond]
	// redaction is the section's selective redaction, nil for none.
	redaction atomic.Pointer[Redaction]
}

type stampedSecond struct {
	unix int64
	text [len("2006-01-02T15:04:05")]byte
}

// NewGenlog builds the query log over sink.
func NewGenlog(cfg Config, sink Sink) *Genlog {
	g := &Genlog{sink: sink}
	g.SetConfig(cfg)
	return g
}

// SetConfig applies a reloaded genlog section.
func (g *Genlog) SetConfig(cfg Config) {
	cfg = cfg.WithDefaults()
	g.redaction.Store(newRedaction(&cfg))
	g.cfg.Store(&cfg)
}

// Redaction is the selective redaction (genlog.redact_columns,
// redact_patterns) the caller applies to a Query before LogQuery, or nil.
// It is the same pointer until the section is reloaded.
func (g *Genlog) Redaction() *Redaction { return g.redaction.Load() }

// Session identifies the session an event belongs to. Its owner (one
// goroutine) passes it to every call, which numbers the records.
type Session struct {
	ID     uint32
	User   string
	Client string
	DB     string
	// Seq numbers the session's records 1, 2, 3...: a gap in a session's
	// sequence in the trail means a record is missing.
	Seq uint64

	// who caches the record fields naming the session (user, client, db,
	// proxy): they change rarely (USE, COM_CHANGE_USER, a reload), and
	// escaping them for every record was a tenth of a record's cost.
	who sessionFields
	// key is the records' Kafka key, the session id: made once, shared
	// by every record of the session (nobody writes to a queued key).
	key   []byte
	keyID uint32
}

type sessionFields struct {
	user, client, db, proxy string
	json                    []byte
}

// Query is one statement as it was answered.
type Query struct {
	Start    time.Time
	Duration time.Duration
	Command  string
	Text     string
	// Original is the client's text when a filter rewrote Text.
	Original string
	// Detected names the detect-only filter that would have refused the
	// statement, and why.
	Detected string
	// Params are a prepared statement's parameters, when logged.
	Params []Param
	// GTID is the GTID of the transaction a write committed, when known.
	GTID        string
	Fingerprint string
	Digest      uint64
	// Sensitive statements (passwords) are logged by fingerprint only.
	Sensitive bool
	// Redacted says which rules of the selective redaction withheld
	// values of Text, Original and Params (Redacted, RedactedColumn...):
	// the caller redacted them already.
	Redacted     []string
	Server       string
	Route        string
	Rows         int64
	Affected     uint64
	LastInsertID uint64
	Warnings     uint16
	ErrorCode    uint16
	Error        string
	InTx         bool

	// RowsChecksum is the answer's RowsChecksum, when RowsChecked.
	RowsChecksum uint64
	RowsChecked  bool
}

// Param is one prepared-statement parameter value, as logged.
type Param struct {
	Text string
	// Quoted values are JSON strings; others are numbers.
	Quoted bool
	Null   bool
}

// Auth is one login attempt.
type Auth struct {
	Time      time.Time
	OK        bool
	ErrorCode uint16
	Plugin    string
	TLS       bool
}

// LogQuery records a statement.
func (g *Genlog) LogQuery(s *Session, q *Query) {
	cfg := g.cfg.Load()
	if !cfg.wantQuery(s) {
		return
	}
	// Room for the fields, the text and the chain value the producer adds.
	buf, b := newRecordBuffer(512 + len(q.Text) + len(q.Fingerprint))
	b = g.head(b, "query", q.Start, s, cfg)
	b = appendField(b, "server", q.Server)
	b = appendField(b, "command", q.Command)
	text, truncated := q.Text, false
	if cfg.redactLiterals() || q.Sensitive {
		text = q.Fingerprint
	}
	if len(text) > cfg.MaxQueryBytes {
		text, truncated = truncateUTF8(text, cfg.MaxQueryBytes), true
	}
	b = appendField(b, "query", text)
	if truncated {
		b = append(b, `,"query_truncated":true`...)
	}
	if q.Original != "" && !cfg.redactLiterals() && !q.Sensitive {
		// A filter rewrote the statement: the trail shows what the client sent.
		b = appendField(b, "original_query", truncateUTF8(q.Original, cfg.MaxQueryBytes))
	}
	if len(q.Params) > 0 && cfg.Params && !cfg.redactLiterals() && !q.Sensitive {
		b = append(b, `,"params":[`...)
		for i, p := range q.Params {
			if i > 0 {
				b = append(b, ',')
			}
			switch {
			case p.Null:
				b = append(b, "null"...)
			case p.Quoted:
				b = appendJSONString(b, p.Text)
			default:
				b = append(b, p.Text...)
			}
		}
		b = append(b, ']')
	}
	b = appendField(b, "fingerprint", q.Fingerprint)
	b = append(b, `,"digest":"`...)
	b = strconv.AppendUint(b, q.Digest, 16)
	b = append(b, '"')
	b = appendInt(b, "duration_us", q.Duration.Microseconds())
	b = appendInt(b, "rows", q.Rows)
	if q.RowsChecked {
		b = append(b, `,"rows_checksum":"`...)
		b = strconv.AppendUint(b, q.RowsChecksum, 16)
		b = append(b, '"')
	}
	switch {
	case q.Affected == 0 && q.LastInsertID == 0 && q.Warnings == 0 && q.ErrorCode == 0 && q.Error == "":
		// Most records (every read): the same bytes, without the number
		// formatting.
		b = append(b, noWriteNoError...)
	default:
		b = appendUint(b, "affected", q.Affected)
		b = appendUint(b, "last_insert_id", q.LastInsertID)
		b = appendUint(b, "warnings", uint64(q.Warnings))
		b = appendUint(b, "error_code", uint64(q.ErrorCode))
		if q.Sensitive && q.Error != "" {
			// Server messages quote the statement ("near 'BY 'secret''").
			b = appendField(b, "error", "(withheld: the statement holds a password)")
		} else {
			b = appendField(b, "error", q.Error)
		}
	}
	b = appendBool(b, "in_tx", q.InTx)
	b = appendField(b, "route", q.Route)
	if q.GTID != "" {
		b = appendField(b, "gtid", q.GTID)
	}
	if q.Detected != "" {
		b = appendField(b, "filter_detected", q.Detected)
	}
	if len(q.Redacted) > 0 {
		b = append(b, `,"redacted":[`...)
		for i, r := range q.Redacted {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, r)
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	g.send(s, buf, b, cfg)
}

// noWriteNoError is what a query record says of a statement that changed
// nothing and had no warning nor error.
const noWriteNoError = `,"affected":0,"last_insert_id":0,"warnings":0,"error_code":0,"error":""`

// WantsParams reports whether records carry prepared-statement parameters.
func (g *Genlog) WantsParams() bool {
	cfg := g.cfg.Load()
	return cfg.Params && !cfg.redactLiterals()
}

// WantsResultChecksums reports whether records carry their answer's
// RowsChecksum.
func (g *Genlog) WantsResultChecksums() bool { return g.cfg.Load().ResultChecksums }

// WantsGTID reports whether records of writes carry their GTID.
func (g *Genlog) WantsGTID() bool { return g.cfg.Load().GTID }

// LogAuth records a login attempt.
func (g *Genlog) LogAuth(s *Session, a *Auth) {
	cfg := g.cfg.Load()
	buf, b := newRecordBuffer(256)
	b = g.head(b, "auth", a.Time, s, cfg)
	b = appendBool(b, "ok", a.OK)
	b = appendUint(b, "error_code", uint64(a.ErrorCode))
	b = appendField(b, "plugin", a.Plugin)
	b = appendBool(b, "tls", a.TLS)
	g.send(s, buf, append(b, '}'), cfg)
}

// LogConnect records a new client connection.
func (g *Genlog) LogConnect(s *Session, at time.Time) {
	cfg := g.cfg.Load()
	buf, b := newRecordBuffer(256)
	b = g.head(b, "connect", at, s, cfg)
	g.send(s, buf, append(b, '}'), cfg)
}

// LogQuit records the end of a session.
func (g *Genlog) LogQuit(s *Session, at time.Time, duration time.Duration, statements int64) {
	cfg := g.cfg.Load()
	buf, b := newRecordBuffer(256)
	b = g.head(b, "quit", at, s, cfg)
	b = appendInt(b, "duration_us", duration.Microseconds())
	b = appendInt(b, "statements", statements)
	g.send(s, buf, append(b, '}'), cfg)
}

func (g *Genlog) head(b []byte, typ string, ts time.Time, s *Session, cfg *Config) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","ts":"`...)
	b = g.appendTimestamp(b, ts)
	b = append(b, '"')
	s.Seq++
	b = appendUint(b, "session", uint64(s.ID))
	b = appendUint(b, "seq", s.Seq)
	w := &s.who
	if w.json == nil || w.user != s.User || w.client != s.Client || w.db != s.DB || w.proxy != cfg.Proxy {
		w.user, w.client, w.db, w.proxy = s.User, s.Client, s.DB, cfg.Proxy
		j := appendField(w.json[:0], "user", s.User)
		j = appendField(j, "client", s.Client)
		j = appendField(j, "db", s.DB)
		w.json = appendField(j, "proxy", cfg.Proxy)
	}
	return append(b, w.json...)
}

// send hands rec, built in the array buf holds, to the sink.
func (g *Genlog) send(s *Session, buf *[]byte, rec []byte, cfg *Config) {
	if s.key == nil || s.keyID != s.ID {
		s.key, s.keyID = strconv.AppendUint(nil, uint64(s.ID), 10), s.ID
	}
	g.sink.Send(Record{Topic: cfg.Topic, Key: s.key, Value: rec, buf: buf})
}

// IsSensitive reports statements whose text may hold a password: CREATE
// USER, ALTER USER, SET PASSWORD, GRANT ... IDENTIFIED BY, PASSWORD(...)
// anywhere, and any of those inside a multi-statement query or a string run
// with EXECUTE IMMEDIATE or PREPARE (where the fingerprint shows only "?",
// so the text itself is searched). Such statements are logged by
// fingerprint, and their error messages, which may quote them, withheld.
func IsSensitive(keyword, fingerprint, text string, multi bool) bool {
	if containsWordFold(fingerprint, "IDENTIFIED") || containsWordFold(fingerprint, "PASSWORD(") {
		return true
	}
	switch {
	case keyword == "SET" || keyword == "CREATE" || keyword == "ALTER" || keyword == "GRANT":
		return containsWordFold(fingerprint, "PASSWORD")
	case multi || keyword == "EXECUTE" || keyword == "PREPARE":
		return containsWordFold(text, "PASSWORD") || containsWordFold(text, "IDENTIFIED")
	}
	return false
}

// containsWordFold is a case-insensitive strings.Contains for an upper-case
// ASCII word, without allocating.
func containsWordFold(s, word string) bool {
	for i := 0; i+len(word) <= len(s); i++ {
		if s[i]|0x20 == word[0]|0x20 && strings.EqualFold(s[i:i+len(word)], word) {
			return true
		}
	}
	return false
}
