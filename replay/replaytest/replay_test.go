// Package replaytest runs `sluice replay` end to end: sysbench captured
// through a real Sluice, replayed onto real MariaDB servers.
package replaytest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/replay"
)

// The topology: replica1 and replica2 stop replicating before the capture,
// so they hold the state at its first GTID (replica2 is then changed on
// purpose); replica3 keeps replicating and is the replica --read-only
// replays against.
var (
	topo   *lab.Topology
	binary string
)

func TestMain(m *testing.M) {
	code := lab.MainWithSluice(m, lab.Options{Replicas: 3}, func(t *lab.Topology, bin string) { topo, binary = t, bin })
	if p := capture.sluice; p != nil {
		p.Process.Kill()
		p.Wait()
	}
	if capture.dir != "" {
		os.RemoveAll(capture.dir)
	}
	os.Exit(code)
}

// capture is the trail the tests replay, made once.
var capture struct {
	once   sync.Once
	broker string
	// startPos is the primary's GTID position when the capture began:
	// replica1's and replica2's.
	startPos string
	log      string
	// sluice is the capturing instance, kept for every test (its broker
	// holds the trail); dir its config and data.
	sluice *exec.Cmd
	dir    string
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func exec1(t *testing.T, ctx context.Context, s *lab.Server, queries ...string) {
	t.Helper()
	for _, q := range queries {
		if err := s.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %s: %v", s.Name, q, err)
		}
	}
}

func queryString(t *testing.T, ctx context.Context, s *lab.Server, q string) string {
	t.Helper()
	db, err := s.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := db.QueryRowContext(ctx, q).Scan(&v); err != nil {
		t.Fatalf("%s: %s: %v", s.Name, q, err)
	}
	return v
}

// checksums is CHECKSUM TABLE of the sysbench tables on s.
func checksums(t *testing.T, ctx context.Context, s *lab.Server) string {
	t.Helper()
	db, err := s.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, "CHECKSUM TABLE sbtest.sbtest1, sbtest.sbtest2, sbtest_ps.sbtest1, sbtest_ps.sbtest2")
	if err != nil {
		t.Fatalf("%s: CHECKSUM TABLE: %v", s.Name, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var table string
		var sum sql.NullInt64
		if err := rows.Scan(&table, &sum); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%d", table, sum.Int64))
	}
	return strings.Join(out, " ")
}

// sysbench runs oltp_read_write's args against db through addr. Errors are
// returned, not fatal: the capture runs it from goroutines.
func sysbench(ctx context.Context, addr, db string, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	all := append([]string{"oltp_read_write", "--db-driver=mysql", "--mysql-host=" + host, "--mysql-port=" + port,
		"--mysql-user=sbtest", "--mysql-password=sbtest", "--mysql-db=" + db, "--tables=2", "--table-size=50000", "--rand-type=uniform"}, args...)
	out, err := exec.CommandContext(ctx, "sysbench", all...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("sysbench %v: %v\n%s", args, err, out)
	}
	return string(out), nil
}

// captureDBs are where each ps mode's sysbench runs: its own schema, so the
// two concurrent sessions never read a row the other writes. Between
// sessions the trail cannot always tell whether a read came before or after
// another session's commit (see the README), and this test asks for no
// difference at all; the order between sessions is tested with a fake
// server in replay's own tests.
var captureDBs = map[string]string{"disable": "sbtest", "auto": "sbtest_ps"}

// startSluice runs bin/sluice in front of the primary and replica3 with
// the options replay needs recorded.
func startSluice(t *testing.T) (listen, broker string) {
	dir, err := os.MkdirTemp("", "sluice-replaytest-")
	if err != nil {
		t.Fatal(err)
	}
	capture.dir = dir
	listen, admin, broker := lab.FreeAddr(t), lab.FreeAddr(t), lab.FreeAddr(t)
	cfg := fmt.Sprintf(`name: capture
listen: %s
admin_listen: %s
servers:
%sservice_user:
  user: monitor
  password: monpass
monitor:
  interval: 200ms
broker:
  enabled: true
  listen: %s
  data_dir: %s
genlog:
  enabled: true
  params: true
  gtid: true
  result_checksums: true
`, listen, admin, lab.ServersYAML([]*lab.Server{topo.Primary, topo.Replicas[2]}, nil), broker, filepath.Join(dir, "broker")) + lab.PoolYAML()
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", path)
	stderr := &lab.SyncBuffer{}
	cmd.Stderr = stderr
	cmd.SysProcAttr = lab.DieWithParent(&syscall.SysProcAttr{}, syscall.SIGKILL)
	if err := lab.Spawn(cmd); err != nil {
		t.Fatal(err)
	}
	capture.sluice = cmd
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sluice stderr:\n%s", stderr.Tail(8<<10))
		}
	})
	lab.WaitFor(t, "sluice to serve", 30*time.Second, func() bool { return lab.Healthy(admin) })
	return listen, broker
}

// records reads the capture's records of one type.
func records(ctx context.Context, broker, where string) ([]replay.Record, error) {
	w, err := audit.ParseWhere(where)
	if err != nil {
		return nil, err
	}
	var out []replay.Record
	err = audit.Read(ctx, audit.ReadOptions{Kafka: audit.PlainKafka(broker), Topic: "sluice.genlog", Where: w}, func(b []byte) {
		if r, err := replay.ParseRecord(b); err == nil {
			out = append(out, r)
		}
	})
	return out, err
}

// captureOnce prepares sysbench's tables on the primary, stops replica1 and
// replica2, and captures sysbench oltp_read_write in both ps modes, and a
// session of the test's own, through Sluice.
func captureOnce(t *testing.T) {
	t.Helper()
	capture.once.Do(func() {
		ctx := ctxT(t, 3*time.Minute)
		exec1(t, ctx, topo.Primary, "DROP DATABASE IF EXISTS sbtest", "CREATE DATABASE sbtest",
			"DROP DATABASE IF EXISTS sbtest_ps", "CREATE DATABASE sbtest_ps",
			"CREATE USER IF NOT EXISTS '"+replayUser+"'@'%' IDENTIFIED BY '"+replayPassword+"'",
			"GRANT ALL PRIVILEGES ON sbtest.* TO '"+replayUser+"'@'%'", "GRANT ALL PRIVILEGES ON sbtest_ps.* TO '"+replayUser+"'@'%'")
		for _, db := range captureDBs {
			if _, err := sysbench(ctx, topo.Primary.Addr(), db, "prepare"); err != nil {
				t.Fatal(err)
			}
		}
		if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range topo.Replicas[:2] {
			exec1(t, ctx, r, "STOP SLAVE", "SET GLOBAL read_only = 0")
		}
		capture.startPos = queryString(t, ctx, topo.Primary, "SELECT @@GLOBAL.gtid_binlog_pos")
		listen, broker := startSluice(t)
		capture.broker = broker
		var log strings.Builder
		outs, errs := map[string]string{}, make(chan error, len(captureDBs))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for mode, db := range captureDBs {
			wg.Go(func() {
				out, err := sysbench(ctx, listen, db, "--threads=1", "--time=3", "--db-ps-mode="+mode, "run")
				mu.Lock()
				outs[mode] = out
				mu.Unlock()
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, mode := range []string{"disable", "auto"} {
			fmt.Fprintf(&log, "ps-mode=%s (%s): %s\n", mode, captureDBs[mode], grepLine(outs[mode], "queries:"))
		}
		ownSession(t, ctx, listen)
		// Every session's records are in the trail once every connect has
		// its quit.
		lab.WaitFor(t, "the capture's quit records", 30*time.Second, func() bool {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			recs, err := records(rctx, broker, `type in ["connect", "quit"]`)
			connects, quits := 0, 0
			for _, r := range recs {
				if r.Type == "connect" {
					connects++
				} else {
					quits++
				}
			}
			return err == nil && connects >= 3 && quits == connects
		})
		capture.log = log.String()
	})
	if capture.broker == "" {
		t.Fatal("the capture failed (see the first test's log)")
	}
	t.Log(capture.log)
}

// ownSession adds what a changed server answers differently: a range on
// the k index (slower without it) and a GROUP BY that ONLY_FULL_GROUP_BY
// refuses, as prepared statements inside a transaction.
func ownSession(t *testing.T, ctx context.Context, listen string) {
	t.Helper()
	dsn := fmt.Sprintf("sbtest:sbtest@tcp(%s)/sbtest?interpolateParams=false", listen)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM sbtest1 WHERE k BETWEEN ? AND ?", 25000+i, 25010+i).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	var id, k int
	if err := tx.QueryRowContext(ctx, "SELECT id, k FROM sbtest1 WHERE id = ? GROUP BY k", 1).Scan(&id, &k); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

func grepLine(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, prefix) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// The account the replays use (created before replica1 and replica2
// stopped replicating), with a password to look for in their output.
const replayUser, replayPassword = "replayer", "Rp-51c0d3-never-shown"

// runReplay runs bin/sluice replay and returns its report and exit status.
// The password comes from a file, or with viaEnv from the environment.
func runReplay(t *testing.T, ctx context.Context, viaEnv bool, args ...string) (*replay.Report, int, string) {
	t.Helper()
	report := filepath.Join(t.TempDir(), "report.json")
	all := []string{"replay", "--brokers", capture.broker, "--user", replayUser, "--report", report, "--progress", "1s"}
	if !viaEnv {
		pw := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(pw, []byte(replayPassword+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		all = append(all, "--password-file", pw)
	}
	cmd := exec.CommandContext(ctx, binary, append(all, args...)...)
	if viaEnv {
		cmd.Env = append(os.Environ(), "SLUICE_REPLAY_PASSWORD="+replayPassword)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sluice replay: %v\n%s", err, out)
	}
	b, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("sluice replay %v exited %d without a report: %v\n%s", args, code, rerr, out)
	}
	var rep replay.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), replayPassword) || strings.Contains(string(b), replayPassword) {
		t.Fatalf("the output or the report shows the password:\n%s", out)
	}
	return &rep, code, string(out)
}

func TestReplayOntoTheCapturesFirstStateMatches(t *testing.T) {
	captureOnce(t)
	ctx := ctxT(t, 3*time.Minute)
	target := topo.Replicas[0]
	pos := queryString(t, ctx, target, "SELECT @@GLOBAL.gtid_current_pos")
	if pos != capture.startPos {
		t.Fatalf("%s is at %s, the capture began at %s", target.Name, pos, capture.startPos)
	}
	// This test is about answers; a fingerprint seen once can run a few
	// milliseconds slower on a loaded machine, which is not what it asks.
	rep, code, out := runReplay(t, ctx, false, "--target", target.Addr(), "--from-gtid", pos, "--slower-min", "1s")
	t.Logf("sluice replay:\n%s", out)
	if rep.Replayed < 1000 {
		t.Fatalf("only %d statements replayed", rep.Replayed)
	}
	for _, d := range replay.Diffs {
		if rep.ByDiff[d] != 0 {
			t.Errorf("%d %s differences", rep.ByDiff[d], d)
		}
	}
	if rep.Differing != 0 || code != 0 {
		t.Errorf("%d statements differ, exit status %d; want 0 and 0", rep.Differing, code)
		logAround(t, ctx, rep)
	}
	if got, want := checksums(t, ctx, target), checksums(t, ctx, topo.Primary); got != want {
		t.Errorf("CHECKSUM TABLE on %s: %s, on the primary: %s", target.Name, got, want)
	}
}

func TestReplayOntoAChangedServerReportsItAndExits1(t *testing.T) {
	captureOnce(t)
	ctx := ctxT(t, 3*time.Minute)
	target := topo.Replicas[1]
	exec1(t, ctx, target, "ALTER TABLE sbtest.sbtest1 DROP INDEX k_1",
		"SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',ONLY_FULL_GROUP_BY')")
	page := filepath.Join(t.TempDir(), "replay.html")
	rep, code, out := runReplay(t, ctx, false, "--target", target.Addr(), "--speed", "max", "--slower-min", "300us", "--html", page)
	t.Logf("sluice replay:\n%s", out)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	var slowerK, groupBy bool
	for _, f := range rep.Fingerprints {
		if strings.Contains(f.Fingerprint, "WHERE k BETWEEN") && f.Slower {
			slowerK = true
		}
		if strings.Contains(f.Fingerprint, "GROUP BY k") {
			for _, e := range f.ErrorChanges {
				if e.From == 0 && e.To == 1055 {
					groupBy = f.Example != nil && f.Example.Replay.ErrorCode == 1055
				}
			}
		}
	}
	if !slowerK {
		t.Error("the range on the dropped index is not reported slower")
	}
	if !groupBy {
		t.Error("the GROUP BY that ONLY_FULL_GROUP_BY refuses is not reported as error 0 → 1055")
	}
	if !rep.Differs() {
		t.Error("the report says nothing differs")
	}
	if b, err := os.ReadFile(page); err != nil || !strings.Contains(string(b), "GROUP BY k") {
		t.Errorf("--html page (%v):\n%.500s", err, b)
	}
}

func TestReadOnlyReplayLeavesAReplicaUnchanged(t *testing.T) {
	captureOnce(t)
	ctx := ctxT(t, 3*time.Minute)
	target := topo.Replicas[2]
	// Replication has delivered the capture's writes (replica1 and
	// replica2 stopped replicating, so not WaitReplicasCaughtUp).
	primaryPos := queryString(t, ctx, topo.Primary, "SELECT @@GLOBAL.gtid_binlog_pos")
	lab.WaitFor(t, target.Name+" to reach "+primaryPos, time.Minute, func() bool {
		return queryString(t, ctx, target, fmt.Sprintf("SELECT MASTER_GTID_WAIT('%s', 1)", primaryPos)) == "0"
	})
	// Writable, so that only --read-only stands between the replay and
	// the data.
	exec1(t, ctx, target, "SET GLOBAL read_only = 0")
	t.Cleanup(func() { target.Exec(context.Background(), "SET GLOBAL read_only = 1") })
	pos, sums := queryString(t, ctx, target, "SELECT @@GLOBAL.gtid_current_pos"), checksums(t, ctx, target)
	rep, _, out := runReplay(t, ctx, true, "--target", target.Addr(), "--read-only", "--speed", "max")
	t.Logf("sluice replay --read-only:\n%s", out)
	if rep.Replayed == 0 || rep.Skipped[replay.ReasonROWrite] == 0 {
		t.Errorf("replayed %d, skipped %v: want reads replayed and writes skipped", rep.Replayed, rep.Skipped)
	}
	// Reads of the capture's rows answer otherwise on the replica, which
	// holds their final state; but nothing the replay sent was refused.
	if rep.ByDiff[replay.DiffError] != 0 {
		t.Errorf("%d statements failed otherwise than in the capture", rep.ByDiff[replay.DiffError])
	}
	if got := queryString(t, ctx, target, "SELECT @@GLOBAL.gtid_current_pos"); got != pos {
		t.Errorf("GTID position moved from %s to %s", pos, got)
	}
	if got := checksums(t, ctx, target); got != sums {
		t.Errorf("CHECKSUM TABLE changed from %s to %s", sums, got)
	}
}

// logAround logs the records around the first differing statement: what
// the sessions did then.
func logAround(t *testing.T, ctx context.Context, rep *replay.Report) {
	for _, f := range rep.Fingerprints {
		e := f.Example
		if e == nil {
			continue
		}
		recs, err := records(ctx, capture.broker, fmt.Sprintf(`type == "query" && ts >= %q && ts <= %q && (query in ["BEGIN", "COMMIT"] || ts >= %q)`,
			e.TS.Add(-20*time.Millisecond).UTC().Format("2006-01-02T15:04:05.000000Z"), e.TS.Add(time.Millisecond).UTC().Format("2006-01-02T15:04:05.000000Z"),
			e.TS.Add(-time.Millisecond).UTC().Format("2006-01-02T15:04:05.000000Z")))
		if err != nil {
			t.Log(err)
			return
		}
		var b strings.Builder
		for _, r := range recs {
			fmt.Fprintf(&b, "%s s%d +%dus tx=%v gtid=%s rows=%d sum=%s %.60s %v\n", r.TS.Format("05.000000"), r.Session, r.DurationUS, r.InTx, r.GTID, r.Rows, r.RowsChecksum, r.Query, string(mustJSON(r.Params)))
		}
		t.Logf("around %s (session %s):\n%s", e.TS.Format("05.000000"), e.Session, b.String())
		return
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// A window larger than --max-records is refused before anything is
// replayed, saying what to do; exit status 2 (it could not run).
func TestReplayRefusesAWindowOverItsBound(t *testing.T) {
	captureOnce(t)
	ctx := ctxT(t, time.Minute)
	cmd := exec.CommandContext(ctx, binary, "replay", "--brokers", capture.broker, "--user", replayUser,
		"--target", topo.Replicas[0].Addr(), "--max-records", "100")
	cmd.Env = append(os.Environ(), "SLUICE_REPLAY_PASSWORD="+replayPassword)
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "more than --max-records 100 records: narrow it with --since/--until") {
		t.Fatalf("exit %v, want status 2 and the bound named:\n%s", err, out)
	}
}
