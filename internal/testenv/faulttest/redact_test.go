package faulttest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRedactedValuesNeverOnDisk runs statements holding values of listed
// columns, e-mail addresses and card numbers, as text and as prepared
// statements, through Sluice at log level debug with the bundled broker:
// none of them is in a record of the topic nor in the broker's files,
// while the other literals are.
func TestRedactedValuesNeverOnDisk(t *testing.T) {
	s := startSluice(t, options{bundledBroker: true, logLevel: "debug",
		genlog: "  topic: fault.redact\n  params: true\n  redact_columns: [app.fault_redact.secret]\n  redact_patterns: [card_number, email]\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db := s.db("app", "apppass", "app")
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		query string
		args  []any
	}{
		{"CREATE TABLE IF NOT EXISTS fault_redact (id INT PRIMARY KEY, secret VARCHAR(64), other VARCHAR(64))", nil},
		{"REPLACE INTO fault_redact (id, secret, other) VALUES (1, 'R3dact-col-1', 'Visible-1'), (2, 'R3dact-col-2', 'owner@r3dact-mail.example')", nil},
		{"UPDATE fault_redact f SET f.secret = ?, other = ? WHERE id = ?", []any{"R3dact-col-3", "Visible-2", 1}},
		{"UPDATE fault_redact SET other = ? WHERE id = ? AND secret <> 'R3dact-col-4'", []any{"6011 0009 9013 9424", 2}},
		{"DELETE FROM fault_redact WHERE secret BETWEEN 'R3dact-col-5' AND 'R3dact-col-6' AND other = 'Visible-3'", nil},
	} {
		if _, err := conn.ExecContext(ctx, q.query, q.args...); err != nil {
			t.Fatalf("%s: %v", q.query, err)
		}
	}
	conn.Close()
	db.Close() // the session's quit record ends the wait below
	secrets := []string{"R3dact-col", "r3dact-mail", "6011 0009 9013 9424"}
	recs := consume(t, s.broker, "fault.redact", 30*time.Second, func(rs []auditRecord) bool {
		for _, r := range rs {
			if r.Type == "quit" {
				return true
			}
		}
		return false
	})
	var all strings.Builder
	for _, r := range recs {
		all.WriteString(r.raw + "\n")
	}
	for _, sec := range secrets {
		if strings.Contains(all.String(), sec) {
			t.Errorf("%q in the audit trail", sec)
		}
	}
	for _, v := range []string{"Visible-1", "Visible-2", "Visible-3", `"redacted":["column:app.fault_redact.secret","pattern:email"]`, `"pattern:card_number"`} {
		if !strings.Contains(all.String(), v) {
			t.Errorf("%q missing from the audit trail", v)
		}
	}
	if t.Failed() {
		t.Fatalf("the trail:\n%s", all.String())
	}
	// The broker's files (the records are stored; its segments are read raw).
	stored := 0
	sluiceFiles(s, func(path string, b []byte) {
		if strings.Contains(string(b), "Visible-2") {
			stored++
		}
		for _, sec := range secrets {
			if strings.Contains(string(b), sec) {
				t.Errorf("%q on disk in %s", sec, path)
			}
		}
	})
	if stored == 0 {
		t.Fatal("no file under the data directory holds the records: the check proves nothing")
	}
}
