package audit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type memSink struct {
	keys, values []string
}

func (m *memSink) Send(r Record) bool {
	m.keys = append(m.keys, string(r.Key))
	m.values = append(m.values, string(r.Value))
	return true
}

func TestGenlogRecordsAreValidJSON(t *testing.T) {
	sink := &memSink{}
	g := NewGenlog(Config{Topic: "t", Proxy: "p1", MaxQueryBytes: 40}, sink)
	s := &Session{ID: 7, User: "app", Client: "127.0.0.1:5000", DB: "app"}
	g.LogQuery(s, &Query{Start: time.Unix(1700000000, 123456000), Duration: 1500 * time.Microsecond, Command: "COM_QUERY",
		Text: "SELECT 'quote\" back\\ nl\n bin\xff', 'ünïcödé' FROM t WHERE id = 1 AND more text", Fingerprint: "SELECT ?", Digest: 0xabc,
		Server: "db2", Route: "replica", Rows: 3, ErrorCode: 0, InTx: false})
	g.LogAuth(s, &Auth{Time: time.Now(), OK: false, ErrorCode: 1045, Plugin: "mysql_native_password"})
	g.LogQuery(s, &Query{Text: "CREATE USER x IDENTIFIED BY 'secret'", Fingerprint: "CREATE USER x IDENTIFIED BY ?", Sensitive: true})
	for i, v := range sink.values {
		var m map[string]any
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			t.Fatalf("record %d is not JSON: %v\n%s", i, err, v)
		}
		if sink.keys[i] != "7" || m["session"] != float64(7) || m["proxy"] != "p1" {
			t.Fatalf("record %d: key %q %v", i, sink.keys[i], m)
		}
	}
	var q map[string]any
	json.Unmarshal([]byte(sink.values[0]), &q)
	if q["type"] != "query" || q["ts"] != "2023-11-14T22:13:20.123456Z" || q["duration_us"] != float64(1500) ||
		q["query_truncated"] != true || len(q["query"].(string)) > 44 || q["route"] != "replica" || q["digest"] != "abc" {
		t.Fatalf("query record: %v", q)
	}
	if strings.Contains(sink.values[2], "secret") {
		t.Fatalf("password logged: %s", sink.values[2])
	}
	for _, c := range []struct {
		keyword, fingerprint, text string
		multi, want                bool
	}{
		{"SET", "SET PASSWORD FOR x = PASSWORD(?)", "", false, true},
		{"SELECT", "SELECT password FROM t", "", false, false},
		{"DO", "DO ? SET PASSWORD FOR ? = PASSWORD(?)", "", true, true},
		{"EXECUTE", "EXECUTE IMMEDIATE ?", "EXECUTE IMMEDIATE 'ALTER USER u IDENTIFIED BY ''x'''", false, true},
		{"EXECUTE", "EXECUTE IMMEDIATE ?", "EXECUTE IMMEDIATE 'SELECT 1'", false, false},
		{"INSERT", "INSERT INTO t VALUES (password(?))", "", false, true},
		{"CREATE", "create user ? identified by by ?", "", false, true},
	} {
		if got := IsSensitive(c.keyword, c.fingerprint, c.text, c.multi); got != c.want {
			t.Errorf("IsSensitive(%q, %q): %v, want %v", c.fingerprint, c.text, got, c.want)
		}
	}
}

func BenchmarkLogQuery(b *testing.B) {
	g := NewGenlog(Config{Topic: "t", Proxy: "p1"}, discard{})
	s := &Session{ID: 7, User: "app", Client: "127.0.0.1:5000", DB: "sbtest"}
	q := &Query{Start: time.Now(), Command: "COM_QUERY", Text: "SELECT c FROM sbtest1 WHERE id=4711", Fingerprint: "SELECT c FROM sbtest1 WHERE id=?", Server: "replica1", Route: "replica", Rows: 1}
	b.ReportAllocs()
	for b.Loop() {
		g.LogQuery(s, q)
	}
}

type discard struct{}

func (discard) Send(Record) bool { return true }

func TestGenlogIncludeExcludeSample(t *testing.T) {
	sink := &memSink{}
	g := NewGenlog(Config{Topic: "t", Include: Select{Users: []string{"app", "ops"}}, Exclude: Select{Databases: []string{"scratch"}}}, sink)
	q := &Query{Text: "SELECT 1"}
	g.LogQuery(&Session{ID: 1, User: "app", DB: "shop"}, q)
	g.LogQuery(&Session{ID: 2, User: "batch", DB: "shop"}, q)  // not included
	g.LogQuery(&Session{ID: 3, User: "ops", DB: "scratch"}, q) // excluded
	g.LogAuth(&Session{ID: 2, User: "batch"}, &Auth{})         // logins always
	if len(sink.values) != 2 || sink.keys[0] != "1" || sink.keys[1] != "2" {
		t.Fatalf("records for sessions %v", sink.keys)
	}
	sink = &memSink{}
	g = NewGenlog(Config{Topic: "t", Sample: 0.25}, sink)
	s := &Session{ID: 9}
	for range 4000 {
		g.LogQuery(s, q)
	}
	if n := len(sink.values); n < 800 || n > 1200 {
		t.Fatalf("sampling 0.25 of 4000 kept %d", n)
	}
	if s.Seq != uint64(len(sink.values)) {
		t.Fatalf("seq %d for %d records: sampling must not leave gaps", s.Seq, len(sink.values))
	}
}

// The date and time part of "ts" is cached per second: records within a
// second, in the next second, back in an earlier one (the clock stepped)
// and given in another zone must all read as time.Format would write them.
func TestTimestampsAcrossSeconds(t *testing.T) {
	sink := &memSink{}
	g := NewGenlog(Config{Topic: "t", Proxy: "p1"}, sink)
	s := &Session{ID: 1}
	base := time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)
	times := []time.Time{
		base.Add(1 * time.Microsecond),
		base.Add(999999 * time.Microsecond),
		base.Add(time.Second), // a new year
		base.Add(-3 * time.Second),
		base.Add(2 * time.Second).In(time.FixedZone("UTC+5", 5*3600)),
		base.Add(2*time.Second + 7*time.Microsecond),
	}
	for _, ts := range times {
		g.LogConnect(s, ts)
	}
	for i, v := range sink.values {
		var m map[string]any
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if want := times[i].UTC().Format("2006-01-02T15:04:05.000000Z"); m["ts"] != want {
			t.Errorf("record %d: ts %v, want %s", i, m["ts"], want)
		}
	}
}

// The fields naming the session are cached in it: a record after USE,
// COM_CHANGE_USER or a reload that renamed the proxy must show the new
// values, and records of two sessions their own.
func TestSessionFieldsFollowChanges(t *testing.T) {
	sink := &memSink{}
	g := NewGenlog(Config{Topic: "t", Proxy: "p1"}, sink)
	a := &Session{ID: 1, User: "app", Client: "127.0.0.1:1", DB: "one"}
	b := &Session{ID: 2, User: "other", Client: "127.0.0.1:2", DB: "x"}
	q := &Query{Text: "SELECT 1", Fingerprint: "SELECT ?"}
	g.LogQuery(a, q)
	g.LogQuery(b, q)
	a.DB = "two"
	g.LogQuery(a, q)
	a.User = "renamed"
	g.LogQuery(a, q)
	g.SetConfig(Config{Topic: "t", Proxy: "p2"})
	g.LogQuery(a, q)
	want := []struct{ user, client, db, proxy string }{
		{"app", "127.0.0.1:1", "one", "p1"},
		{"other", "127.0.0.1:2", "x", "p1"},
		{"app", "127.0.0.1:1", "two", "p1"},
		{"renamed", "127.0.0.1:1", "two", "p1"},
		{"renamed", "127.0.0.1:1", "two", "p2"},
	}
	for i, v := range sink.values {
		var m map[string]any
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		w := want[i]
		if m["user"] != w.user || m["client"] != w.client || m["db"] != w.db || m["proxy"] != w.proxy {
			t.Errorf("record %d: user %v client %v db %v proxy %v; want %+v", i, m["user"], m["client"], m["db"], m["proxy"], w)
		}
	}
}

func TestGenlogRedactedField(t *testing.T) {
	sink := &memSink{}
	g := NewGenlog(Config{Topic: "t", Params: true, RedactColumns: []string{"cards.pan"}}, sink)
	if g.Redaction() == nil || !g.WantsParams() {
		t.Fatal("redact_columns set, no Redaction")
	}
	s := &Session{ID: 1}
	g.LogQuery(s, &Query{Command: "COM_STMT_EXECUTE", Text: "UPDATE cards SET pan = ? WHERE id = ?", Params: []Param{{Text: Redacted, Quoted: true}, {Text: "7"}},
		Redacted: []string{RedactedColumn + "cards.pan", RedactedPattern + "email"}})
	g.LogQuery(s, &Query{Text: "SELECT 1"})
	var m struct {
		Params   []any    `json:"params"`
		Redacted []string `json:"redacted"`
	}
	if err := json.Unmarshal([]byte(sink.values[0]), &m); err != nil || m.Params[0] != "<redacted>" ||
		strings.Join(m.Redacted, "|") != "column:cards.pan|pattern:email" {
		t.Fatalf("%v %+v: %s", err, m, sink.values[0])
	}
	if strings.Contains(sink.values[1], "redacted") {
		t.Fatalf("a record with nothing redacted says so: %s", sink.values[1])
	}
	g.SetConfig(Config{})
	if g.Redaction() != nil {
		t.Fatal("a Redaction after reloading without it")
	}
}

// The fields of a query that changed nothing are written as one constant:
// the same bytes as field by field.
func TestNoWriteNoErrorFields(t *testing.T) {
	b := appendUint(nil, "affected", 0)
	b = appendUint(b, "last_insert_id", 0)
	b = appendUint(b, "warnings", 0)
	b = appendUint(b, "error_code", 0)
	b = appendField(b, "error", "")
	if string(b) != noWriteNoError {
		t.Fatalf("%s, want %s", noWriteNoError, b)
	}
}
