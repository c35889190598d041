package hatest

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

var (
	topo      *lab.Topology
	sluiceBin string // built from this checkout
	agentPath string // ha/sluice, absolute
)

const (
	ocfRoot   = "/usr/lib/ocf"
	shellfunc = ocfRoot + "/lib/heartbeat/ocf-shellfuncs"
)

func TestMain(m *testing.M) {
	var err error
	if agentPath, err = filepath.Abs(filepath.Join("..", "sluice")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(lab.MainWithSluice(m, lab.Options{Replicas: 1}, func(t *lab.Topology, bin string) { topo, sluiceBin = t, bin }))
}

// onCI reports whether CI=true: there, a missing tool fails a test.
func onCI() bool {
	v := os.Getenv("CI")
	return strings.EqualFold(v, "true") || v == "1"
}

// lookTool finds a command in PATH or the sbin directories (where
// ocf-tester, corosync and pacemakerd live, outside a user's PATH).
func lookTool(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// need skips t, or fails it on CI, unless every tool (a command name or an
// absolute path) is present.
func need(t *testing.T, pkgs string, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if filepath.IsAbs(tool) {
			if _, err := os.Stat(tool); err != nil {
				missing = append(missing, tool)
			}
		} else if _, ok := lookTool(tool); !ok {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing %s: install Debian's %s (scripts/install-deps.sh does)", strings.Join(missing, ", "), pkgs)
	if onCI() {
		t.Fatal(msg + " [CI=true: required]")
	}
	t.Skip(msg)
}

func needAgentTools(t *testing.T) {
	t.Helper()
	need(t, "resource-agents and mariadb-client", shellfunc, "mariadb", "setsid", "timeout", "curl")
}

// result is one run of the agent.
type result struct {
	action string
	rc     int
	stdout string
	stderr string
}

// reason is the agent's ocf-exit-reason, if it gave one.
func (r result) reason() string {
	for _, l := range strings.Split(r.stderr, "\n") {
		if s, ok := strings.CutPrefix(l, "ocf-exit-reason:"); ok {
			return s
		}
	}
	return ""
}

func (r result) String() string {
	return fmt.Sprintf("%s: rc=%d reason=%q\nstderr:\n%s", r.action, r.rc, r.reason(), r.stderr)
}

// runAgent runs the agent with exactly env (no inherited variables).
func runAgent(t *testing.T, path string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.Dir = "/"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second // in case a child kept the pipes open
	err := cmd.Run()
	r := result{action: strings.Join(args, " "), stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("agent %s did not finish within 90s\nstderr:\n%s", r.action, r.stderr)
	case errors.As(err, &ee):
		r.rc = ee.ExitCode()
	case err != nil:
		t.Fatalf("agent %s: %v", r.action, err)
	}
	return r
}

// baseEnv is what an OCF resource manager passes to every action.
func baseEnv(instance, rsctmp string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin:/usr/bin:/bin",
		"OCF_ROOT=" + ocfRoot,
		"OCF_RA_VERSION_MAJOR=1",
		"OCF_RA_VERSION_MINOR=1",
		"OCF_RESOURCE_INSTANCE=" + instance,
		"HA_RSCTMP=" + rsctmp,
		"OCF_RESKEY_CRM_meta_timeout=30000",
		"OCF_RESKEY_CRM_meta_interval=10000",
	}
}

// inst is one Sluice resource: its config, parameters and state.
type inst struct {
	t      *testing.T
	name   string
	dir    string
	config string
	listen string
	admin  string
	params map[string]string
}

// sluiceConfig is a config for the lab topology (or for servers, when
// given); extra is appended.
func sluiceConfig(listen, admin, extra string, servers ...string) string {
	if len(servers) == 0 {
		for _, s := range topo.Servers() {
			servers = append(servers, s.Addr())
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\nadmin_listen: %s\nservers:\n", listen, admin)
	for i, addr := range servers {
		fmt.Fprintf(&b, "  - name: db%d\n    address: %s\n", i+1, addr)
	}
	fmt.Fprintf(&b, "service_user:\n  user: %s\n  password: %s\nmonitor:\n  interval: 200ms\n", lab.MonitorUser, lab.MonitorPassword)
	b.WriteString("genlog:\n  enabled: false\nbroker:\n  enabled: false\n")
	b.WriteString(extra)
	return b.String()
}

// newInst writes a config (see sluiceConfig) and returns the resource; its
// cleanup stops whatever the agent started, even when the test failed.
func newInst(t *testing.T, extra string, servers ...string) *inst {
	t.Helper()
	dir := t.TempDir()
	in := &inst{t: t, name: "p_sluice", dir: dir, config: filepath.Join(dir, "sluice.yaml"),
		listen: lab.FreeAddr(t), admin: lab.FreeAddr(t)}
	in.params = map[string]string{
		"binary":   sluiceBin,
		"config":   in.config,
		"pidfile":  filepath.Join(dir, "run", "sluice.pid"),
		"logfile":  filepath.Join(dir, "log", "sluice.log"),
		"workdir":  filepath.Join(dir, "work"),
		"user":     lab.AppUser,
		"password": lab.AppPassword,
	}
	in.writeConfig(sluiceConfig(in.listen, in.admin, extra, servers...))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(in.params["logfile"])
			t.Logf("sluice log:\n%s", b)
		}
		in.run("stop", "OCF_RESKEY_CRM_meta_timeout=10000")
		if pid := in.pid(); pid > 0 && alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return in
}

func (in *inst) writeConfig(cfg string) {
	in.t.Helper()
	if err := os.WriteFile(in.config, []byte(cfg), 0o600); err != nil {
		in.t.Fatal(err)
	}
}

func (in *inst) env(extra ...string) []string {
	env := baseEnv(in.name, filepath.Join(in.dir, "rsctmp"))
	for k, v := range in.params {
		env = append(env, "OCF_RESKEY_"+k+"="+v)
	}
	return append(env, extra...)
}

// run runs one action; extra environment entries override the defaults.
func (in *inst) run(action string, extra ...string) result {
	in.t.Helper()
	return runAgent(in.t, agentPath, in.env(extra...), action)
}

// expect runs action and fails the test unless it exits with rc.
func (in *inst) expect(rc int, action string, extra ...string) result {
	in.t.Helper()
	r := in.run(action, extra...)
	if r.rc != rc {
		in.t.Fatalf("%s %v: exit %d, want %d\n%s", action, extra, r.rc, rc, r)
	}
	return r
}

// pid is the pid in the pid file, or 0.
func (in *inst) pid() int {
	b, err := os.ReadFile(in.params["pidfile"])
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (in *inst) log() string {
	b, _ := os.ReadFile(in.params["logfile"])
	return string(b)
}

// healthStatus is the HTTP status of GET /health, 0 when unreachable.
func healthStatus(admin string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + admin + "/health")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// selectOne runs SELECT 1 as the app user through the proxy at addr.
func selectOne(addr string) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = lab.AppUser, lab.AppPassword, "tcp", addr, "app"
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 3*time.Second, 3*time.Second, 3*time.Second
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	if one != 1 {
		return fmt.Errorf("SELECT 1 returned %d", one)
	}
	return nil
}

// alive reports whether pid is a live process (a zombie is not: PID 1 of a
// container may never reap the orphans the agent leaves behind).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func TestAgentIsExecutable(t *testing.T) {
	fi, err := os.Stat(agentPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o755 != 0o755 {
		t.Fatalf("%s has mode %v; resource agents must be 0755", agentPath, fi.Mode().Perm())
	}
}

// metaData mirrors the parts of ra-api-1.dtd the test checks.
type metaData struct {
	Name    string `xml:"name,attr"`
	Version string `xml:"version"`
	Params  []struct {
		Name    string `xml:"name,attr"`
		Content struct {
			Type    string `xml:"type,attr"`
			Default string `xml:"default,attr"`
		} `xml:"content"`
	} `xml:"parameters>parameter"`
	Actions []struct {
		Name     string `xml:"name,attr"`
		Timeout  string `xml:"timeout,attr"`
		Interval string `xml:"interval,attr"`
		Depth    string `xml:"depth,attr"`
	} `xml:"actions>action"`
}

func TestMetaDataWithoutBinaryOrConfig(t *testing.T) {
	needAgentTools(t)
	need(t, "libxml2-utils and resource-agents", "xmllint", "/usr/share/resource-agents/ra-api-1.dtd")
	env := append(baseEnv("RESOURCE_ID", t.TempDir()),
		"OCF_RESKEY_binary=/nonexistent/sluice", "OCF_RESKEY_config=/nonexistent/sluice.yaml",
		"OCF_TESTER_FAIL_HAVE_BINARY=1")
	r := runAgent(t, agentPath, env, "meta-data")
	if r.rc != 0 {
		t.Fatalf("meta-data: %s", r)
	}
	xmllint, _ := lookTool("xmllint")
	cmd := exec.Command(xmllint, "--noout", "--dtdvalid", "/usr/share/resource-agents/ra-api-1.dtd", "-")
	cmd.Stdin = strings.NewReader(r.stdout)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("meta-data is not valid against ra-api-1.dtd: %v\n%s", err, out)
	}

	var md metaData
	if err := xml.Unmarshal([]byte(r.stdout), &md); err != nil {
		t.Fatal(err)
	}
	if md.Name != "sluice" || md.Version != "1.1" {
		t.Errorf("resource-agent name %q, OCF version %q; want sluice, 1.1", md.Name, md.Version)
	}
	types := map[string]string{}
	defaults := map[string]string{}
	for _, p := range md.Params {
		types[p.Name] = p.Content.Type
		defaults[p.Name] = p.Content.Default
	}
	for name, typ := range map[string]string{"binary": "string", "config": "string", "pidfile": "string",
		"logfile": "string", "workdir": "string", "admin_url": "string", "check_address": "string",
		"user": "string", "password": "string", "client_binary": "string", "client_options": "string",
		"daemon_user": "string", "check_timeout": "integer",
		"limit_nofile": "integer"} {
		if types[name] != typ {
			t.Errorf("parameter %s: type %q, want %q", name, types[name], typ)
		}
	}
	if defaults["binary"] == "" || defaults["config"] == "" || !strings.HasSuffix(defaults["pidfile"], "sluice-RESOURCE_ID.pid") ||
		defaults["check_timeout"] != "5" {
		t.Errorf("defaults: %v", defaults)
	}
	actions := map[string]bool{}
	for _, a := range md.Actions {
		if a.Timeout == "" {
			t.Errorf("action %s has no timeout", a.Name)
		}
		key := a.Name
		if a.Name == "monitor" {
			key += "/" + a.Depth
			if a.Interval == "" {
				t.Errorf("monitor depth %s has no interval", a.Depth)
			}
		}
		actions[key] = true
	}
	for _, a := range []string{"start", "stop", "monitor/0", "monitor/10", "monitor/20", "reload", "meta-data", "validate-all"} {
		if !actions[a] {
			t.Errorf("meta-data lacks action %s: %v", a, actions)
		}
	}
}

func TestUsageAndArguments(t *testing.T) {
	needAgentTools(t)
	env := baseEnv("p_sluice", t.TempDir())
	for _, tc := range []struct {
		args []string
		rc   int
	}{
		{[]string{"usage"}, 0},
		{[]string{"help"}, 0},
		{nil, 2},                      // OCF_ERR_ARGS: no action
		{[]string{"start", "now"}, 2}, // OCF_ERR_ARGS: extra argument
		{[]string{"promote"}, 3},      // OCF_ERR_UNIMPLEMENTED
		{[]string{"frobnicate"}, 3},
	} {
		r := runAgent(t, agentPath, env, tc.args...)
		if r.rc != tc.rc {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, r.rc, tc.rc, r)
		}
		if tc.rc == 0 && !strings.Contains(r.stdout, "usage:") {
			t.Errorf("%v printed no usage: %q", tc.args, r.stdout)
		}
	}
}

func TestValidateAll(t *testing.T) {
	needAgentTools(t)
	in := newInst(t, "")
	in.expect(0, "validate-all")

	// OCF_ERR_INSTALLED (5): this node lacks something.
	r := in.expect(5, "validate-all", "OCF_RESKEY_binary=/nonexistent/sluice")
	if !strings.Contains(r.reason(), "/nonexistent/sluice") {
		t.Errorf("reason %q should name the binary", r.reason())
	}
	notExec := filepath.Join(t.TempDir(), "sluice")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	in.expect(5, "validate-all", "OCF_RESKEY_binary="+notExec)
	in.expect(5, "validate-all", "OCF_RESKEY_config=/nonexistent/sluice.yaml")
	in.expect(5, "validate-all", "OCF_TESTER_FAIL_HAVE_BINARY=1")

	// OCF_ERR_CONFIGURED (6): the configuration is wrong wherever it runs.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(sluiceConfig(in.listen, in.admin, "max_procs: -3\n")), 0o600)
	r = in.expect(6, "validate-all", "OCF_RESKEY_config="+bad)
	if !strings.Contains(r.reason(), bad+":") || !strings.Contains(r.reason(), "max_procs") {
		t.Errorf("reason %q should name the file, line and key", r.reason())
	}
	for _, param := range []string{
		"OCF_RESKEY_check_timeout=abc",
		"OCF_RESKEY_check_timeout=0",
		"OCF_RESKEY_limit_nofile=many",
		"OCF_RESKEY_admin_url=ftp://127.0.0.1:8989",
		"OCF_RESKEY_check_address=nowhere",
		"OCF_RESKEY_config=relative/sluice.yaml",
		"OCF_RESKEY_pidfile=sluice.pid",
		"OCF_RESKEY_config=",
	} {
		if r := in.run("validate-all", param); r.rc != 6 || r.reason() == "" {
			t.Errorf("validate-all with %s: exit %d, want 6 with a reason\n%s", param, r.rc, r)
		}
	}
	// Depth 20 logs in through the proxy: it needs a user.
	in.expect(6, "validate-all", "OCF_CHECK_LEVEL=20", "OCF_RESKEY_user=")
	in.expect(0, "validate-all", "OCF_CHECK_LEVEL=20")
	// Nothing was started.
	in.expect(7, "monitor")
}

// weirdPassword needs quoting in a MySQL option file.
const weirdPassword = `we"ird\pa ss#1`

func TestLifecycle(t *testing.T) {
	needAgentTools(t)
	// An account for the deep check, there before sluice loads accounts.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := topo.Primary.Exec(ctx, `CREATE OR REPLACE USER 'hacheck'@'%' IDENTIFIED BY 'we"ird\\pa ss#1'`); err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitReplicasCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	in := newInst(t, "")

	// Cleanly stopped: 7, also for a probe on a node without the binary.
	in.expect(7, "monitor")
	in.expect(7, "monitor", "OCF_RESKEY_CRM_meta_interval=0", "OCF_RESKEY_binary=/nonexistent/sluice",
		"OCF_TESTER_FAIL_HAVE_BINARY=1", "OCF_RESKEY_config=/nonexistent/sluice.yaml")
	in.expect(7, "monitor", "OCF_CHECK_LEVEL=20")

	// start returns only once it serves: no waiting here.
	in.expect(0, "start")
	if st := healthStatus(in.admin); st != http.StatusOK {
		t.Fatalf("/health is %d right after start returned", st)
	}
	if err := selectOne(in.listen); err != nil {
		t.Fatalf("SELECT 1 right after start returned: %v", err)
	}
	pid := in.pid()
	if pid == 0 || !alive(pid) {
		t.Fatalf("pid file holds %d", pid)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !strings.Contains(string(b), "serve") {
		t.Fatalf("pid %d is not sluice serve: %q", pid, b)
	}

	// Idempotent start.
	in.expect(0, "start")
	if p := in.pid(); p != pid {
		t.Fatalf("second start replaced pid %d with %d", pid, p)
	}

	for _, level := range []string{"0", "10", "20"} {
		in.expect(0, "monitor", "OCF_CHECK_LEVEL="+level)
		in.expect(0, "monitor", "OCF_CHECK_LEVEL="+level, "OCF_RESKEY_CRM_meta_interval=0")
	}
	// The password reaches the client through an option file: quotes,
	// backslashes and # survive.
	in.expect(0, "monitor", "OCF_CHECK_LEVEL=20", "OCF_RESKEY_user=hacheck", "OCF_RESKEY_password="+weirdPassword)
	in.expect(0, "monitor", "OCF_CHECK_LEVEL=20", "OCF_RESKEY_client_options=--skip-ssl --default-character-set=utf8mb4")
	in.expect(1, "monitor", "OCF_CHECK_LEVEL=20", "OCF_RESKEY_client_options=--no-such-option")
	r := in.expect(1, "monitor", "OCF_CHECK_LEVEL=20", "OCF_RESKEY_password=wrong")
	if !strings.Contains(r.reason(), "SELECT 1") {
		t.Errorf("reason %q should say SELECT 1 failed", r.reason())
	}
	r = in.expect(1, "monitor", "OCF_CHECK_LEVEL=10", "OCF_RESKEY_admin_url=http://"+lab.FreeAddr(t))
	if !strings.Contains(r.reason(), "/health") {
		t.Errorf("reason %q should name /health", r.reason())
	}

	// reload: SIGHUP, which sluice logs.
	in.expect(0, "reload")
	lab.WaitFor(t, "sluice to log the reload", 10*time.Second, func() bool {
		return strings.Contains(in.log(), "config reloaded")
	})
	// An invalid config is not sent: reload says so and sluice keeps running.
	good, _ := os.ReadFile(in.config)
	in.writeConfig(string(good) + "max_procs: -3\n")
	r = in.expect(6, "reload")
	if !strings.Contains(r.reason(), "max_procs") {
		t.Errorf("reason %q should name the bad key", r.reason())
	}
	in.writeConfig(string(good))
	if strings.Contains(in.log(), "reload refused") || strings.Count(in.log(), "config reloaded") != 1 {
		t.Fatalf("sluice got a SIGHUP for an invalid config:\n%s", in.log())
	}
	in.expect(0, "monitor", "OCF_CHECK_LEVEL=20")

	// SIGKILL: the pid file outlives the process. That is a failure (1),
	// not a clean stop (7), for monitors and probes alike.
	syscall.Kill(pid, syscall.SIGKILL)
	lab.WaitFor(t, "the killed process to die", 10*time.Second, func() bool { return !alive(pid) })
	r = in.expect(1, "monitor")
	if !strings.Contains(r.reason(), strconv.Itoa(pid)) || !strings.Contains(r.reason(), "killed or crashed") {
		t.Errorf("reason %q should name the dead pid", r.reason())
	}
	in.expect(1, "monitor", "OCF_RESKEY_CRM_meta_interval=0")
	in.expect(1, "reload") // nothing to reload: not running

	// Recovery as Pacemaker does it: stop (cleans up), start.
	in.expect(0, "stop")
	if _, err := os.Stat(in.params["pidfile"]); !os.IsNotExist(err) {
		t.Fatalf("stop left the pid file: %v", err)
	}
	in.expect(7, "monitor")
	in.expect(0, "start")
	if p := in.pid(); p == pid || !alive(p) {
		t.Fatalf("start after a kill: pid %d (was %d)", p, pid)
	}
	in.expect(0, "stop")
	in.expect(0, "stop")
	in.expect(7, "monitor")
	if !strings.Contains(in.log(), "draining") || !strings.Contains(in.log(), "msg=stopped") {
		t.Errorf("stop did not drain through SIGTERM:\n%s", in.log())
	}
}

func TestStopWithBinaryDeleted(t *testing.T) {
	needAgentTools(t)
	in := newInst(t, "")
	copyBin := filepath.Join(t.TempDir(), "sluice")
	b, err := os.ReadFile(sluiceBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyBin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	in.params["binary"] = copyBin
	in.expect(0, "start")
	pid := in.pid()
	if err := os.Remove(copyBin); err != nil {
		t.Fatal(err)
	}
	in.expect(5, "validate-all")
	in.expect(0, "monitor")
	in.expect(0, "monitor", "OCF_RESKEY_CRM_meta_interval=0")
	in.expect(0, "monitor", "OCF_CHECK_LEVEL=20")
	in.expect(0, "stop")
	if alive(pid) {
		t.Fatalf("pid %d still runs after stop", pid)
	}
	in.expect(0, "stop")
	in.expect(7, "monitor")
	in.expect(5, "start")
}

func TestStartFailures(t *testing.T) {
	needAgentTools(t)

	t.Run("no primary", func(t *testing.T) {
		// A server nobody listens on: /health stays 503, so start gives up
		// at its timeout, and leaves the process for stop.
		in := newInst(t, "", lab.FreeAddr(t))
		began := time.Now()
		r := in.expect(1, "start", "OCF_RESKEY_CRM_meta_timeout=4000")
		if took := time.Since(began); took > 8*time.Second {
			t.Errorf("start took %v with a 4s timeout", took)
		}
		if !strings.Contains(r.reason(), "not ready") || !strings.Contains(r.reason(), "503") {
			t.Errorf("reason %q should say /health answered 503", r.reason())
		}
		in.expect(0, "monitor")
		in.expect(1, "monitor", "OCF_CHECK_LEVEL=10")
		in.expect(0, "stop")
		in.expect(7, "monitor")
	})

	t.Run("listener taken", func(t *testing.T) {
		in := newInst(t, "")
		ln, err := net.Listen("tcp", in.listen)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		r := in.expect(1, "start")
		if !strings.Contains(r.reason(), "exited during start") || !strings.Contains(r.reason(), "address already in use") {
			t.Errorf("reason %q should quote sluice's error", r.reason())
		}
		in.expect(7, "monitor")
	})

	t.Run("bad config", func(t *testing.T) {
		in := newInst(t, "servers: []\n")
		r := in.expect(6, "start")
		if !strings.Contains(r.reason(), "servers") {
			t.Errorf("reason %q should name the key", r.reason())
		}
		in.expect(7, "monitor")
	})
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	needAgentTools(t)
	in := newInst(t, "drain_timeout: 5m\n")
	in.expect(0, "start")
	pid := in.pid()

	// An open transaction holds the drain for drain_timeout, longer than
	// stop may take: the agent must SIGKILL before its own timeout.
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = lab.AppUser, lab.AppPassword, "tcp", in.listen, "app"
	cfg.Timeout = 5 * time.Second
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var one int
	if err := tx.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}

	// With a 10s timeout: SIGKILL 2s before it (a tenth, at least 2s).
	began := time.Now()
	r := in.expect(0, "stop", "OCF_RESKEY_CRM_meta_timeout=10000")
	took := time.Since(began)
	if took < 7*time.Second || took > 10*time.Second {
		t.Errorf("stop took %v; with a 10s timeout it should SIGKILL after 8s and finish before 10s", took)
	}
	if !strings.Contains(r.stderr, "SIGKILL") {
		t.Errorf("stop did not say it used SIGKILL:\n%s", r.stderr)
	}
	if alive(pid) {
		t.Fatalf("pid %d survived stop", pid)
	}
	if !strings.Contains(in.log(), "draining") {
		t.Errorf("sluice never got SIGTERM:\n%s", in.log())
	}
	in.expect(7, "monitor")
}

func TestOCFTester(t *testing.T) {
	needAgentTools(t)
	need(t, "resource-agents and libxml2-utils", "ocf-tester", "xmllint")
	in := newInst(t, "")
	// ocf-tester checks the agent runs as nobody: give it a copy in a
	// directory anyone may enter, whatever the checkout's permissions.
	dir, err := os.MkdirTemp("", "sluice-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	agent := filepath.Join(dir, "sluice")
	b, err := os.ReadFile(agentPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agent, b, 0o755); err != nil {
		t.Fatal(err)
	}
	tester, _ := lookTool("ocf-tester")
	args := []string{"-v", "-n", in.name}
	for _, k := range []string{"binary", "config", "pidfile", "logfile", "workdir", "user", "password"} {
		args = append(args, "-o", k+"="+in.params[k])
	}
	args = append(args, agent)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tester, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin:/usr/bin:/bin", "OCF_ROOT=" + ocfRoot,
		"HA_RSCTMP=" + filepath.Join(in.dir, "rsctmp")}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "passed all tests") {
		t.Fatalf("ocf-tester: %v\n%s", err, out)
	}
	t.Logf("ocf-tester: %s", strings.TrimSpace(string(out[bytes.LastIndexByte(bytes.TrimSpace(out), '\n')+1:])))
	in.expect(7, "monitor")
}

func TestDaemonUser(t *testing.T) {
	needAgentTools(t)
	need(t, "util-linux", "setpriv")
	if os.Geteuid() != 0 {
		t.Skip("running sluice as another user needs root")
	}
	// nobody must reach the binary and the config: a directory anyone may
	// enter (t.TempDir's parent is private).
	dir, err := os.MkdirTemp("", "sluice-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	b, err := os.ReadFile(sluiceBin)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sluice")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}

	in := newInst(t, "")
	in.params["binary"] = bin
	in.params["daemon_user"] = "nobody"
	in.params["workdir"] = filepath.Join(dir, "work")
	in.expect(5, "validate-all", "OCF_RESKEY_daemon_user=no-such-user-here")
	in.expect(4, "validate-all") // the config is 0600 root
	config := filepath.Join(dir, "sluice.yaml")
	cfg, _ := os.ReadFile(in.config)
	if err := os.WriteFile(config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	in.params["config"] = config
	in.expect(0, "validate-all")

	in.expect(0, "start")
	pid := in.pid()
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if !strings.Contains(string(status), "\nUid:\t65534\t65534\t65534\t65534\n") {
		t.Fatalf("sluice (pid %d) does not run as nobody:\n%s", pid, status)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(in.params["workdir"], &st); err != nil || st.Uid != 65534 {
		t.Errorf("workdir owner %d %v, want nobody", st.Uid, err)
	}
	in.expect(0, "monitor", "OCF_CHECK_LEVEL=20")
	in.expect(0, "reload")
	lab.WaitFor(t, "sluice to log the reload", 10*time.Second, func() bool {
		return strings.Contains(in.log(), "config reloaded")
	})
	in.expect(0, "stop")
	if alive(pid) {
		t.Fatalf("pid %d survived stop", pid)
	}
	in.expect(7, "monitor")
}
