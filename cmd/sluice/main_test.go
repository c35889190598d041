package main_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

var (
	topo   *lab.Topology
	binary string
)

func TestMain(m *testing.M) {
	os.Exit(lab.MainWithSluice(m, lab.Options{Replicas: 2}, func(t *lab.Topology, bin string) { topo, binary = t, bin }))
}

// instance is a running bin/sluice process.
type instance struct {
	*lab.Process
	config string
	listen string
	admin  string
	broker string
}

// writeConfig writes a config for the shared topology; extra is appended.
func writeConfig(t *testing.T, path, listen, admin, brokerAddr, extra string) {
	t.Helper()
	cfg := fmt.Sprintf(`listen: %s
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
%s`, listen, admin, lab.ServersYAML(topo.Servers(), nil), brokerAddr, filepath.Join(filepath.Dir(path), "broker"), extra)
	if !strings.Contains(extra, "genlog:") {
		cfg += "genlog:\n  enabled: false\n"
	}
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

func startInstance(t *testing.T, extra string) *instance {
	t.Helper()
	return startInstanceOn(t, lab.FreeAddr(t), extra)
}

// startInstanceOn starts bin/sluice with its client listener on listen.
func startInstanceOn(t *testing.T, listen, extra string) *instance {
	t.Helper()
	dir := t.TempDir()
	in := &instance{config: filepath.Join(dir, "sluice.yaml"), listen: listen, admin: lab.FreeAddr(t), broker: lab.FreeAddr(t)}
	writeConfig(t, in.config, in.listen, in.admin, in.broker, extra)
	in.Process = lab.StartProcess(t, "sluice", in.healthy, binary, "serve", "--config", in.config)
	return in
}

func (in *instance) healthy() bool { return lab.Healthy(in.admin) }

func (in *instance) dsn(user, pass, db string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, pass, "tcp", in.listen, db
	cfg.Timeout = 5 * time.Second
	return cfg.FormatDSN()
}

// `sluice version` and `sluice --version` name the version, the commit when
// the build recorded it, and the Go that built the binary.
func TestVersion(t *testing.T) {
	form := regexp.MustCompile(`^sluice \S+ \((commit [0-9a-f]{40}( with local changes)?, )?go1\.\d+[^)]*\)\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(binary, args...).Output()
		if err != nil || !form.Match(out) {
			t.Errorf("sluice %s: %q %v; want %s", args[0], out, err, form)
		}
	}
}

func TestBadConfigExitsTwoNamingTheKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("listen: 127.0.0.1:4006\nservers:\n  - name: a\n    address: 127.0.0.1:99999\nservice_user: {user: m}\n"), 0o600)
	for _, args := range [][]string{{"serve", "--config", path}, {"serve", "--check-config", "--config", path}} {
		cmd := exec.Command(binary, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Fatalf("%v: exit: %v, want status 2", args, err)
		}
		msg := strings.TrimSpace(stderr.String())
		if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, path+":4: servers[0].address") {
			t.Fatalf("%v: error message %q should be one line naming file, line and key", args, msg)
		}
	}
	good := filepath.Join(t.TempDir(), "good.yaml")
	writeConfig(t, good, "127.0.0.1:4006", "127.0.0.1:8989", "127.0.0.1:9092", "")
	if out, err := exec.Command(binary, "serve", "--check-config", "--config", good).CombinedOutput(); err != nil {
		t.Fatalf("--check-config on a good config: %v: %s", err, out)
	}
}

func TestServeReloadAndDrain(t *testing.T) {
	in := startInstance(t, "")
	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var one int
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + in.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(metrics.String(), `sluice_commands_total{command="COM_QUERY"}`) {
		t.Fatalf("metrics lack command counts:\n%.2000s", metrics.String())
	}
	if !regexp.MustCompile(`(?m)^sluice_build_info\{go_version="go1\.[^"]+",revision="[0-9a-f]*",version="[^"]+"\} 1$`).Match(metrics.Bytes()) {
		t.Fatalf("metrics lack sluice_build_info:\n%.2000s", metrics.String())
	}

	// A broken config on SIGHUP is refused and the running one kept.
	good, _ := os.ReadFile(in.config)
	os.WriteFile(in.config, []byte("listen: [\n"), 0o600)
	in.Signal(syscall.SIGHUP)
	lab.WaitFor(t, "the refused reload to be logged", 10*time.Second, func() bool {
		return strings.Contains(in.Stderr.String(), "config reload refused")
	})
	if err := db.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
	// A good one applies: max_connections 1 refuses a second session.
	os.WriteFile(in.config, append(good, "max_connections: 1\n"...), 0o600)
	in.Signal(syscall.SIGHUP)
	lab.WaitFor(t, "the reload", 10*time.Second, func() bool { return strings.Contains(in.Stderr.String(), "config reloaded") })
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	defer other.Close()
	if err := other.Ping(); err == nil || !strings.Contains(err.Error(), "1040") {
		t.Fatalf("second session with max_connections 1: %v, want 1040", err)
	}

	// SIGTERM drains: an open transaction may finish, then Sluice exits 0.
	ctx := context.Background()
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS drain (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "REPLACE INTO drain VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	in.Signal(syscall.SIGTERM)
	lab.WaitFor(t, "draining to start", 10*time.Second, func() bool { return strings.Contains(in.Stderr.String(), "draining") })
	if _, err := net.DialTimeout("tcp", in.listen, time.Second); err == nil {
		t.Fatal("listener still accepts while draining")
	}
	// The admin server stops after the drain: operators watch it from there.
	if resp, err := http.Get("http://" + in.admin + "/metrics"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics while draining: %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatalf("commit while draining: %v", err)
	}
	conn.Close()
	if err := in.Wait(20 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v, want status 0", err)
	}
}

// TestSysbench runs sysbench oltp_read_write through Sluice in both
// prepared-statement modes and requires zero errors.
func TestSysbench(t *testing.T) {
	sb := lab.SysbenchPath(t)
	in := startInstance(t, "")
	host, port, _ := net.SplitHostPort(in.listen)
	common := []string{"--db-driver=mysql", "--mysql-host=" + host, "--mysql-port=" + port,
		"--mysql-user=sbtest", "--mysql-password=sbtest", "--mysql-db=sbtest", "--tables=4", "--table-size=10000"}
	runTest := func(test string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, sb, append(append([]string{test}, common...), args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("sysbench %s %v: %v\n%s", test, args, err, out)
		}
		return string(out)
	}
	run := func(args ...string) string { return runTest("oltp_read_write", args...) }
	run("cleanup")
	run("prepare")
	for _, mode := range []string{"disable", "auto"} {
		deadlocksBefore := innodbDeadlocks(t)
		out := run("--threads=4", "--time=4", "--db-ps-mode="+mode, "run")
		// sysbench exits non-zero on any error it does not retry. The ones it
		// retries ("ignored") must be the server's own deadlocks, which a
		// direct connection meets just the same.
		ignored := lab.SysbenchCount(out, "ignored errors:")
		if deadlocks := innodbDeadlocks(t) - deadlocksBefore; ignored > deadlocks {
			t.Fatalf("sysbench ps-mode=%s: %d ignored errors but only %d deadlocks on the server:\n%s", mode, ignored, deadlocks, out)
		}
		if lab.SysbenchCount(out, "reconnects:") != 0 {
			t.Fatalf("sysbench ps-mode=%s reconnected:\n%s", mode, out)
		}
		if !strings.Contains(out, "transactions:") {
			t.Fatalf("sysbench ps-mode=%s ran nothing:\n%s", mode, out)
		}
		t.Logf("ps-mode=%s: %s", mode, lab.GrepLine(out, "queries:"))

		// Reads inside oltp_read_write's transactions belong on the
		// primary. Autocommit reads (oltp_read_only without transactions;
		// oltp_read_write --skip-trx races its own DELETE/INSERT pairs into
		// duplicate keys, directly as through any proxy) must be served by
		// the replicas.
		before := topo.GlobalStatusAll(t, "Com_select")
		out = runTest("oltp_read_only", "--threads=4", "--time=3", "--db-ps-mode="+mode, "--skip-trx=on", "run")
		after := topo.GlobalStatusAll(t, "Com_select")
		if lab.SysbenchCount(out, "reconnects:") != 0 {
			t.Fatalf("sysbench --skip-trx ps-mode=%s reconnected:\n%s", mode, out)
		}
		reads := lab.SysbenchCount(out, "read:")
		var onReplicas int
		for _, r := range topo.Replicas {
			onReplicas += int(after[r.Name] - before[r.Name])
		}
		onPrimary := int(after[topo.Primary.Name] - before[topo.Primary.Name])
		t.Logf("ps-mode=%s oltp_read_only --skip-trx: %d reads, Com_select +%d on replicas, +%d on the primary", mode, reads, onReplicas, onPrimary)
		if onReplicas < reads*9/10 || onPrimary > reads/10 {
			t.Fatalf("ps-mode=%s: replicas served %d of %d reads, primary %d", mode, onReplicas, reads, onPrimary)
		}
	}
}

// innodbDeadlocks is the primary's count of deadlocks since it started.
func innodbDeadlocks(t *testing.T) int {
	n, err := topo.Primary.GlobalStatus("Innodb_deadlocks")
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// Two instances share one port with listen_reuseport, as a clone set of
// single-threaded processes does; killing one leaves the port served.
func TestListenReusePort(t *testing.T) {
	listen := lab.FreeAddr(t)
	a := startInstanceOn(t, listen, "listen_reuseport: true\nmax_procs: 1\n")
	b := startInstanceOn(t, listen, "listen_reuseport: true\nmax_procs: 1\n")
	query := func() error {
		db, err := sql.Open("mysql", a.dsn("app", "apppass", "app"))
		if err != nil {
			return err
		}
		defer db.Close()
		db.SetMaxIdleConns(0)
		var one int
		return db.QueryRow("SELECT 1").Scan(&one)
	}
	for range 10 {
		if err := query(); err != nil {
			t.Fatalf("query through the shared port: %v", err)
		}
	}
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait(10 * time.Second)
	// Every new connection now lands on b.
	for range 10 {
		if err := query(); err != nil {
			t.Fatalf("query after one instance was killed: %v", err)
		}
	}
	if !b.healthy() {
		t.Fatal("surviving instance is not healthy")
	}
}

// ctl runs `sluice ctl` against in.
func (in *instance) ctl(t *testing.T, token string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append([]string{"ctl", "--admin", in.admin, "--token", token}, args...)
	out, err := exec.CommandContext(ctx, binary, full...).CombinedOutput()
	return string(out), err
}

func TestAdminAPIAndCtl(t *testing.T) {
	const token = "tok-9f8e7d"
	in := startInstance(t, "admin_token: "+token+"\n")
	// /health stays open for cluster managers; the rest needs the token.
	resp, err := http.Get("http://" + in.admin + "/v1/servers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !in.healthy() {
		t.Fatalf("without a token: /v1/servers %d, want 401; /health must stay 200", resp.StatusCode)
	}
	if out, err := in.ctl(t, "wrong", "servers"); err == nil || !strings.Contains(out, "token") {
		t.Fatalf("ctl servers with a wrong token should fail naming the token: %v %s", err, out)
	}

	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for i := range 12 {
		var n int
		if err := db.QueryRow("SELECT " + strconv.Itoa(i)).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	out, err := in.ctl(t, token, "sessions", "--json")
	var sessions []struct {
		User       string
		Statements int64
		Backends   []string
	}
	if err != nil || json.Unmarshal([]byte(out), &sessions) != nil || len(sessions) != 1 ||
		sessions[0].User != "app" || sessions[0].Statements < 12 || len(sessions[0].Backends) == 0 {
		t.Fatalf("ctl sessions: %v\n%s", err, out)
	}
	out, err = in.ctl(t, token, "digests", "--json", "--sort", "count")
	var digests []struct {
		Fingerprint string
		Count       uint64
		MaxUS       int64 `json:"max_us"`
	}
	if err != nil || json.Unmarshal([]byte(out), &digests) != nil || len(digests) == 0 ||
		digests[0].Fingerprint != "SELECT ?" || digests[0].Count != 12 || digests[0].MaxUS <= 0 {
		t.Fatalf("ctl digests: %v\n%s", err, out)
	}
	if out, err = in.ctl(t, token, "digests"); err != nil || !strings.Contains(out, "FINGERPRINT") || !strings.Contains(out, "SELECT ?") {
		t.Fatalf("ctl digests table: %v\n%s", err, out)
	}
	if out, err = in.ctl(t, token, "config"); err != nil || strings.Contains(out, "monpass") || strings.Contains(out, token) ||
		!strings.Contains(out, `"password": "********"`) {
		t.Fatalf("ctl config must show the config with secrets redacted: %v\n%s", err, out)
	}

	// Every server's GTID position as the monitor read it (a recycled
	// result buffer once turned these into fragments of other answers).
	out, err = in.ctl(t, token, "servers", "--json")
	var servers []struct {
		Name         string
		GTIDPosition string `json:"gtid_position"`
	}
	if err != nil || json.Unmarshal([]byte(out), &servers) != nil || len(servers) != len(topo.Servers()) {
		t.Fatalf("ctl servers: %v\n%s", err, out)
	}
	gtid := regexp.MustCompile(`^\d+-\d+-\d+(,\d+-\d+-\d+)*$`)
	for _, s := range servers {
		if !gtid.MatchString(s.GTIDPosition) {
			t.Fatalf("%s: GTID position %q", s.Name, s.GTIDPosition)
		}
	}

	// Maintenance drains a replica: reads go to the other one.
	drained := topo.Replicas[0]
	if out, err = in.ctl(t, token, "maintenance", drained.Name); err != nil {
		t.Fatalf("maintenance: %v %s", err, out)
	}
	if out, err = in.ctl(t, token, "servers"); err != nil || !strings.Contains(out, "maintenance") {
		t.Fatalf("ctl servers should show the drained server: %v\n%s", err, out)
	}
	// @@server_id names the server that answered each read.
	for range 20 {
		var id int
		if err := db.QueryRow("SELECT @@server_id").Scan(&id); err != nil {
			t.Fatal(err)
		}
		if id == drained.ServerID {
			t.Fatal("a drained replica served a read")
		}
	}
	if out, err = in.ctl(t, token, "maintenance", "--off", drained.Name); err != nil {
		t.Fatalf("maintenance --off: %v %s", err, out)
	}
	if out, err = in.ctl(t, token, "maintenance", topo.Primary.Name); err == nil || !strings.Contains(out, "switch over") {
		t.Fatalf("draining the primary must be refused: %v %s", err, out)
	}

	// A reload with a broken file is refused; the running config stays.
	good, _ := os.ReadFile(in.config)
	os.WriteFile(in.config, []byte("listen: [broken\n"), 0o600)
	if out, err = in.ctl(t, token, "reload"); err == nil || !strings.Contains(out, "refused") {
		t.Fatalf("reload of a broken config: %v %s", err, out)
	}
	os.WriteFile(in.config, good, 0o600)
	if out, err = in.ctl(t, token, "reload"); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
}

// A reload adds and removes servers: the monitor polls the new list before
// the reload answers.
func TestReloadChangesServers(t *testing.T) {
	in := startInstance(t, "")
	full, err := os.ReadFile(in.config)
	if err != nil {
		t.Fatal(err)
	}
	last := topo.Replicas[len(topo.Replicas)-1]
	entry := fmt.Sprintf("  - name: %s\n    address: %s\n", last.Name, last.Addr())
	if !bytes.Contains(full, []byte(entry)) {
		t.Fatalf("config does not list %s as expected:\n%s", last.Name, full)
	}
	names := func() string {
		out, err := in.ctl(t, "", "servers", "--json")
		if err != nil {
			t.Fatalf("ctl servers: %v %s", err, out)
		}
		return out
	}
	os.WriteFile(in.config, bytes.Replace(full, []byte(entry), nil, 1), 0o600)
	if out, err := in.ctl(t, "", "reload"); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	if strings.Contains(names(), `"`+last.Name+`"`) {
		t.Fatalf("%s still listed after it was removed from the config", last.Name)
	}
	os.WriteFile(in.config, full, 0o600)
	if out, err := in.ctl(t, "", "reload"); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	if out := names(); !strings.Contains(out, `"`+last.Name+`"`) || !strings.Contains(out, `"state": "replica"`) {
		t.Fatalf("%s not back as a replica after it was added again:\n%s", last.Name, out)
	}
}

// TestPoolOperatorView: with pooling, the pooled connections per server and
// user show in /v1/servers, `sluice ctl servers` and /metrics.
func TestPoolOperatorView(t *testing.T) {
	const token = "tok-pool-4c1"
	in := startInstance(t, "admin_token: "+token+"\npool: {mode: multiplex, max_server_connections: 3}\n")
	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 20 {
		if _, err := db.Exec("INSERT INTO app.pool_view (n) VALUES (?)", i); err != nil {
			if _, err := db.Exec("CREATE TABLE IF NOT EXISTS app.pool_view (n INT)"); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := in.ctl(t, token, "servers", "--json")
	if err != nil {
		t.Fatalf("ctl servers: %v\n%s", err, out)
	}
	var servers []struct {
		Name string
		Pool []struct {
			User  string
			Open  int
			InUse int `json:"in_use"`
		}
	}
	if err := json.Unmarshal([]byte(out), &servers); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	found := false
	for _, s := range servers {
		for _, p := range s.Pool {
			if s.Name == "primary" && p.User == "app" && p.Open >= 1 && p.Open <= 3 {
				found = true
			}
		}
	}
	if !found {
		t.Fatalf("/v1/servers shows no pooled connection of app to the primary (1 to 3): %s", out)
	}
	if table, err := in.ctl(t, token, "servers"); err != nil || !strings.Contains(table, "app ") || !strings.Contains(table, "in use") {
		t.Fatalf("ctl servers: %v\n%s", err, table)
	}
	if _, metrics := adminGet(t, in, token, "/metrics"); !strings.Contains(string(metrics), `sluice_pool_connections{server="primary",user="app"}`) {
		t.Fatalf("/metrics lacks the pool's gauge:\n%s", metrics)
	}
}
