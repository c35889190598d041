package main_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// record is a Genlog record as a compliance reader sees it.
type record struct {
	Type       string   `json:"type"`
	TS         string   `json:"ts"`
	Session    uint32   `json:"session"`
	User       string   `json:"user"`
	Client     string   `json:"client"`
	DB         string   `json:"db"`
	Proxy      string   `json:"proxy"`
	Server     string   `json:"server"`
	Command    string   `json:"command"`
	Query      string   `json:"query"`
	Digest     string   `json:"digest"`
	Rows       int64    `json:"rows"`
	Affected   uint64   `json:"affected"`
	ErrorCode  int      `json:"error_code"`
	Error      string   `json:"error"`
	Route      string   `json:"route"`
	OK         bool     `json:"ok"`
	Statements int64    `json:"statements"`
	InTx       bool     `json:"in_tx"`
	Params     []any    `json:"params"`
	GTID       string   `json:"gtid"`
	Redacted   []string `json:"redacted"`
	// Event, From and To are a topology record's (sluice.events).
	Event string `json:"event"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Action, Target and Outcome are an admin action's (sluice.events).
	Action    string `json:"action"`
	Target    string `json:"target"`
	Outcome   string `json:"outcome"`
	offset    int64
	partition int
}

// readTopic reads every record of topic from the bundled broker with
// kafka-go, waiting until cond holds for what was read.
func readTopic(t *testing.T, broker, topic string, cond func([]record) bool) []record {
	t.Helper()
	var out []record
	lab.WaitFor(t, "records in "+topic, 20*time.Second, func() bool {
		out = out[:0]
		conn, err := kafka.Dial("tcp", broker)
		if err != nil {
			return false
		}
		parts, err := conn.ReadPartitions(topic)
		conn.Close()
		if err != nil || len(parts) == 0 {
			return false
		}
		for _, p := range parts {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				m, err := r.ReadMessage(ctx)
				cancel()
				if err != nil {
					break
				}
				var rec record
				if err := json.Unmarshal(m.Value, &rec); err != nil {
					t.Fatalf("record at %d/%d is not JSON: %v: %s", m.Partition, m.Offset, err, m.Value)
				}
				rec.offset, rec.partition = m.Offset, m.Partition
				out = append(out, rec)
			}
			r.Close()
		}
		return cond(out)
	})
	return out
}

func TestGenlogRecordsQueriesAndLogins(t *testing.T) {
	in := startInstance(t, "name: audit-test\ngenlog:\n  enabled: true\n  topic: audit.test\n  params: true\n  gtid: true\n")
	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TABLE IF NOT EXISTS audited (id INT PRIMARY KEY, v TEXT)", "REPLACE INTO audited VALUES (1, 'one'), (2, 'two')"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// The read goes to a replica: let replication deliver the rows first.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := topo.WaitReplicasCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := conn.QueryRowContext(ctx, "SELECT v FROM audited WHERE id = ?", 2).Scan(&v); err != nil {
		t.Fatal(err)
	}
	conn.ExecContext(ctx, "SELEC broken syntax")
	// Text the old --where splitter cut at the wrong place.
	for _, q := range []string{"SELECT 'a==1' AS probe", "SELECT 'x && y' AS probe"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.ExecContext(ctx, "CREATE USER IF NOT EXISTS 'audit_pw'@'%' IDENTIFIED BY 'Sup3rSecret'"); err != nil {
		t.Fatal(err)
	}
	conn.ExecContext(ctx, "DROP USER IF EXISTS 'audit_pw'@'%'")
	conn.Close()
	db.Close()
	bad, _ := sql.Open("mysql", in.dsn("app", "wrong-password", "app"))
	bad.Ping()
	bad.Close()

	recs := readTopic(t, in.broker, "audit.test", func(rs []record) bool {
		quits, failed := 0, 0
		for _, r := range rs {
			if r.Type == "quit" {
				quits++
			}
			if r.Type == "auth" && !r.OK {
				failed++
			}
		}
		return quits >= 1 && failed >= 1
	})
	var session uint32
	var found struct{ create, insert, prepared, closed, syntax, authOK, authFail, connect, quit bool }
	for _, r := range recs {
		if r.Proxy != "audit-test" {
			t.Fatalf("proxy %q in %+v", r.Proxy, r)
		}
		if strings.Contains(r.Query, "Sup3rSecret") {
			t.Fatalf("a password reached the audit trail: %+v", r)
		}
		switch {
		case r.Type == "auth" && r.OK && r.User == "app":
			found.authOK, session = true, r.Session
		case r.Type == "auth" && !r.OK && r.ErrorCode == 1045 && r.User == "app":
			found.authFail = true
		case r.Type == "connect":
			found.connect = true
		case r.Type == "quit" && r.Statements >= 5:
			found.quit = true
		case r.Type == "query" && strings.HasPrefix(r.Query, "CREATE TABLE"):
			found.create = r.Server == "primary" && r.ErrorCode == 0 && r.Command == "COM_QUERY"
		case r.Type == "query" && strings.HasPrefix(r.Query, "REPLACE"):
			// 0-1-N: domain 0, the primary's server_id 1.
			found.insert = r.Affected == 2 && r.Server == "primary" && r.Digest != "" && strings.HasPrefix(r.GTID, "0-1-")
		case r.Type == "query" && r.Command == "COM_STMT_EXECUTE":
			found.prepared = r.Query == "SELECT v FROM audited WHERE id = ?" && r.Rows == 1 &&
				len(r.Params) == 1 && r.Params[0] == float64(2) && r.GTID == "" &&
				strings.HasPrefix(r.Server, "replica") && strings.HasPrefix(r.Route, "replica")
		case r.Type == "query" && r.Command == "COM_STMT_CLOSE":
			// The driver closes the statement it prepared: the record names it.
			found.closed = r.Query == "SELECT v FROM audited WHERE id = ?" && r.Digest != "0" && r.Digest != ""
		case r.Type == "query" && r.ErrorCode == 1064:
			found.syntax = strings.Contains(r.Error, "syntax") && r.Query == "SELEC broken syntax"
		}
	}
	if !found.create || !found.insert || !found.prepared || !found.closed || !found.syntax || !found.authOK || !found.authFail || !found.connect || !found.quit {
		t.Fatalf("missing or wrong records: %+v\n%+v", found, recs)
	}
	// One session's records are in one partition, in order.
	var last int64 = -1
	partition := -1
	for _, r := range recs {
		if r.Session != session {
			continue
		}
		if partition >= 0 && r.partition != partition {
			t.Fatalf("session %d spans partitions %d and %d", session, partition, r.partition)
		}
		partition = r.partition
		if r.offset <= last {
			t.Fatalf("session %d out of order", session)
		}
		last = r.offset
	}

	// sluice audit search filters the trail with a --where expression.
	actx, acancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer acancel()
	out, err := exec.CommandContext(actx, binary, "audit", "search", "--brokers", in.broker, "--topic", "audit.test",
		"--where", `type=="auth" && ok==false`).Output()
	if err != nil {
		t.Fatalf("audit search: %v", err)
	}
	failedLogins := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range failedLogins {
		var r record
		if json.Unmarshal([]byte(l), &r) != nil || r.Type != "auth" || r.OK || r.ErrorCode != 1045 {
			t.Fatalf("audit search returned %q", l)
		}
	}
	out, err = exec.CommandContext(actx, binary, "audit", "search", "--brokers", in.broker, "--topic", "audit.test", "--since", "10m",
		"--where", `command=="COM_STMT_EXECUTE"`, "--table").Output()
	if err != nil || !strings.HasPrefix(string(out), "TS") || !strings.Contains(string(out), "SELECT v FROM audited") {
		t.Fatalf("audit search --table: %v\n%s", err, out)
	}

	// --where is an expr-lang expression: quoted operators are text, ||
	// works, a field a record lacks is no match there.
	for where, want := range map[string][]string{
		`query~"a==1"`:                                     {"SELECT 'a==1' AS probe"},
		`query~"&&" && type=="query"`:                      {"SELECT 'x && y' AS probe"},
		`(user=="nobody" || user=="app") && query~"probe"`: {"SELECT 'a==1' AS probe", "SELECT 'x && y' AS probe"},
		`gtid=="x"`:                                        nil,
		`gtid~"0-1-" && query matches "^REPLACE"`:          {"REPLACE INTO audited VALUES (1, 'one'), (2, 'two')"},
	} {
		out, err := exec.CommandContext(actx, binary, "audit", "search", "--brokers", in.broker, "--topic", "audit.test", "--where", where).Output()
		if err != nil {
			t.Fatalf("audit search --where %s: %v", where, err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var r record
			if l != "" && json.Unmarshal([]byte(l), &r) == nil {
				got = append(got, r.Query)
			}
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("audit search --where %s: %q, want %q\n%s", where, got, want, out)
		}
	}
	// An expression that does not compile: exit status 2, its position on
	// stderr, no records.
	for _, sub := range []string{"search", "tail"} {
		cmd := exec.CommandContext(actx, binary, "audit", sub, "--brokers", in.broker, "--topic", "audit.test", "--where", `user=="app" && (type=="query"`)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || len(out) != 0 || !strings.Contains(stderr.String(), "--where: ") || !strings.Contains(stderr.String(), "(1:29)") {
			t.Fatalf("audit %s with a bad --where: %v, stdout %q, stderr %q", sub, err, out, stderr.String())
		}
	}

	// kcat, the tool compliance teams already have, reads the same records.
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat is required on CI")
		}
		t.Skip("kcat not installed")
	}
	kctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err = exec.CommandContext(kctx, kcat, "-b", in.broker, "-t", "audit.test", "-C", "-e", "-o", "beginning", "-q").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < len(recs) {
		t.Fatalf("kcat read %d records, kafka-go %d", len(lines), len(recs))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("kcat line is not JSON: %s", l)
		}
	}
}

// With Genlog on, the audit topics exist once Sluice serves, before any
// record: a consumer can subscribe from the start.
func TestGenlogTopicsExistBeforeTraffic(t *testing.T) {
	in := startInstance(t, "genlog:\n  enabled: true\n  topic: audit.early\n")
	n := lab.Topics(t, in.broker) // lists without creating
	if n["audit.early"] < 1 || n["sluice.events"] < 1 {
		t.Fatalf("topics once serving: %v", n)
	}
	// kcat sees them too, with their partitions.
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-b", in.broker, "-L", "-t", "audit.early").Output()
	if err != nil || !strings.Contains(string(out), `topic "audit.early" with `+strconv.Itoa(n["audit.early"])+` partitions`) {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
}
