package main_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// TestRedactColumnsAndPatterns runs statements with values of listed
// columns and card numbers through a real Sluice from go-sql-driver (text
// protocol, binary prepared statements, client-side interpolation) and the
// mariadb CLI, then stops the broker so records spill: no listed column's
// value and no card number reaches the topic or the spill file, while the
// other literals do, and each record says which rules withheld values.
func TestRedactColumnsAndPatterns(t *testing.T) {
	dir := t.TempDir()
	brokerAddr := lab.FreeAddr(t)
	broker := startBroker(t, brokerAddr, dir)
	defer func() { broker.Process.Kill(); broker.Wait() }()
	spillFile := filepath.Join(dir, "genlog.spill")
	in := startInstance(t, fmt.Sprintf(`genlog:
  enabled: true
  topic: redact.test
  brokers: [%s]
  params: true
  on_full: spill
  spill_file: %s
  redact_columns: [redact_cards.pan, app.redact_users.email]
  redact_patterns: [card_number]
`, brokerAddr, spillFile))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	open := func(interpolate bool) *sql.Conn {
		dsn := in.dsn("app", "apppass", "app")
		if interpolate {
			dsn += "&interpolateParams=true"
		}
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	binary, interpolated := open(false), open(true)
	run := func(c *sql.Conn, q string, args ...any) {
		t.Helper()
		if _, err := c.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	run(binary, "CREATE TABLE IF NOT EXISTS redact_cards (id INT PRIMARY KEY, uid INT, pan VARCHAR(40), note VARCHAR(80))")
	run(binary, "CREATE TABLE IF NOT EXISTS redact_users (id INT PRIMARY KEY, email VARCHAR(80), name VARCHAR(80))")
	// Text protocol: multi-row INSERT, a card number in an unlisted column.
	run(binary, "REPLACE INTO redact_cards (id, uid, pan, note) VALUES (1, 1, 'pan-secret-A1', 'note-visible-1'), (2, 1, 'pan-secret-A2', 'card 4111 1111 1111 1111')")
	run(binary, "REPLACE INTO redact_users (id, email, name) VALUES (1, 'mail-secret-A', 'name-visible-1')")
	// Binary prepared statements: the parameters of listed columns.
	run(binary, "UPDATE redact_cards SET pan = ?, note = ? WHERE id = ?", "pan-secret-B", "note-visible-2", 1)
	run(binary, "UPDATE redact_cards SET note = ? WHERE id = ?", "5105105105105100", 2)
	// Interpolated by the client: a text query again.
	run(interpolated, "UPDATE redact_cards SET pan = ? WHERE id = ? AND note <> ?", "pan-secret-C", 2, "note-visible-3")
	// The read goes to a replica: let replication deliver the tables first.
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := binary.QueryContext(ctx, "SELECT c.id FROM redact_cards c JOIN redact_users u ON u.id = c.uid WHERE c.pan IN ('pan-secret-D1', 'pan-secret-D2') AND u.email LIKE 'mail-secret-D%' AND u.name = 'name-visible-2'")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	// The parser cannot read it: every literal is withheld.
	binary.ExecContext(ctx, "SELEC pan FROM redact_cards WHERE note = 'unparsed-secret-E'")
	// The server's message quotes the statement from where it went wrong.
	if _, err := binary.ExecContext(ctx, "SELECT id FROM redact_cards WHERE id = 1 LIMIT 1 2 AND pan = 'pan-secret-J'"); err == nil || !strings.Contains(err.Error(), "pan-secret-J") {
		t.Fatalf("the server's message does not quote the value: %v", err)
	}
	// The mariadb CLI.
	host, port, _ := net.SplitHostPort(in.listen)
	cli := func(q string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, "mariadb", "-h", host, "-P", port, "-uapp", "-papppass", "app", "-e", q).CombinedOutput(); err != nil {
			t.Fatalf("mariadb -e %q: %v\n%s", q, err, out)
		}
	}
	cli("UPDATE redact_cards SET pan = 'pan-secret-F', note = 'note-visible-4' WHERE id = 1")

	secrets := []string{"pan-secret", "mail-secret", "unparsed-secret", "4111 1111 1111 1111", "5105105105105100"}
	visible := []string{"note-visible-1", "note-visible-2", "note-visible-3", "note-visible-4", "name-visible-1", "name-visible-2"}
	recs := readTopic(t, brokerAddr, "redact.test", func(rs []record) bool {
		for _, r := range rs {
			if strings.Contains(r.Query, "note-visible-4") {
				return true
			}
		}
		return false
	})
	var trail bytes.Buffer
	fired := map[string]bool{}
	for _, r := range recs {
		if r.Type != "query" {
			continue
		}
		fmt.Fprintf(&trail, "%s %v %v %s\n", r.Query, r.Params, r.Redacted, r.Error)
		for _, f := range r.Redacted {
			fired[f] = true
		}
		switch {
		case r.Command == "COM_STMT_EXECUTE" && strings.HasPrefix(r.Query, "UPDATE redact_cards SET pan = ?, note = ?"):
			if len(r.Params) != 3 || r.Params[0] != "<redacted>" || r.Params[1] != "note-visible-2" || r.Params[2] != float64(1) ||
				!slices.Equal(r.Redacted, []string{"column:redact_cards.pan"}) {
				t.Errorf("prepared UPDATE: %+v", r)
			}
		case strings.Contains(r.Query, "LIMIT 1 2"):
			if r.ErrorCode != 1064 || !strings.Contains(r.Error, "<redacted>") {
				t.Errorf("error message: %+v", r)
			}
		case strings.HasPrefix(r.Query, "SELEC "):
			if r.Query != "SELEC pan FROM redact_cards WHERE note = '<redacted>'" || !slices.Equal(r.Redacted, []string{"unparsed: all literals"}) {
				t.Errorf("unparsed: %+v", r)
			}
		}
	}
	for _, f := range []string{"column:redact_cards.pan", "column:app.redact_users.email", "pattern:card_number", "unparsed: all literals"} {
		if !fired[f] {
			t.Errorf("no record says %q fired", f)
		}
	}
	for _, s := range secrets {
		if strings.Contains(trail.String(), s) {
			t.Errorf("%q reached the topic", s)
		}
	}
	for _, v := range visible {
		if !strings.Contains(trail.String(), v) {
			t.Errorf("%q, not to be withheld, is missing from the topic", v)
		}
	}
	if t.Failed() {
		t.Fatalf("the trail:\n%s", trail.String())
	}
	raw, err := exec.CommandContext(ctx, "kcat", "-b", brokerAddr, "-t", "redact.test", "-C", "-e", "-o", "beginning", "-q").Output()
	if err == nil {
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s)) {
				t.Fatalf("kcat reads %q in the topic", s)
			}
		}
	}

	// The broker away: records go to the spill file, redacted already.
	broker.Process.Signal(syscall.SIGKILL)
	broker.Wait()
	run(binary, "UPDATE redact_cards SET pan = ?, note = ? WHERE id = ?", "pan-secret-G", "note-visible-5", 2)
	run(binary, "UPDATE redact_cards SET pan = 'pan-secret-H', note = 'card: 4111-1111-1111-1111' WHERE id = 2 AND note <> 'note-visible-6'")
	cli("UPDATE redact_users SET email = 'mail-secret-I', name = 'name-visible-3' WHERE id = 1")
	var spilled []byte
	lab.WaitFor(t, "records in the spill file", 20*time.Second, func() bool {
		spilled, _ = os.ReadFile(spillFile)
		return bytes.Contains(spilled, []byte("name-visible-3"))
	})
	for _, s := range append(secrets, "4111-1111-1111-1111") {
		if bytes.Contains(spilled, []byte(s)) {
			t.Fatalf("%q reached the spill file:\n%s", s, spilled)
		}
	}
	for _, v := range []string{"note-visible-5", "note-visible-6"} {
		if !bytes.Contains(spilled, []byte(v)) {
			t.Fatalf("%q missing from the spill file:\n%s", v, spilled)
		}
	}
}
