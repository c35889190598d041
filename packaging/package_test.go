// Package packaging tests the Debian package `make package` builds: lintian,
// then a real install on this machine (dpkg -i, as root), every file's
// place, owner and mode, the installed binary, unit and resource agent
// (ocf-tester against a MariaDB topology), an upgrade that keeps a locally
// changed conffile, remove (data kept) and purge. It leaves the machine as
// it found it, and skips, saying why, when it is not root or a sluice is
// already installed here.
package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

var topo *lab.Topology

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // TestPackage skips: no topology needed
	}
	os.Exit(lab.Main(m, lab.Options{Replicas: -1}, func(t *lab.Topology) { topo = t }))
}

func onCI() bool {
	v := os.Getenv("CI")
	return strings.EqualFold(v, "true") || v == "1"
}

// need skips t, or fails it on CI, unless every tool is installed.
func need(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat(filepath.Join("/usr/sbin", tool)); err != nil {
				missing = append(missing, tool)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("missing %s: scripts/install-deps.sh installs them", strings.Join(missing, ", "))
	if onCI() {
		t.Fatal(msg + " [CI=true: required]")
	}
	t.Skip(msg)
}

// run runs a command (bounded) and returns its combined output; it fails t
// unless the command succeeds.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), "DEBIAN_FRONTEND=noninteractive",
		"PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin"), env...)
	cmd.Dir = ".."
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// The paths the package owns or makes.
const (
	binPath   = "/usr/bin/sluice"
	agentPath = "/usr/lib/ocf/resource.d/sluice/sluice"
	unitPath  = "/lib/systemd/system/sluice.service"
	confPath  = "/etc/sluice/sluice.yaml"
	stateDir  = "/var/lib/sluice"
)

// pkgStatus is dpkg's status of the sluice package ("" when unknown).
func pkgStatus() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "sluice").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// lock keeps two runs of this test on one machine (several checkouts) apart.
func lock(t *testing.T) {
	f, err := os.OpenFile("/run/lock/sluice-package-test.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	deadline := time.Now().Add(5 * time.Minute)
	for syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		if time.Now().After(deadline) {
			t.Fatal("another run of the package test held /run/lock/sluice-package-test.lock for 5 minutes")
		}
		time.Sleep(time.Second)
	}
}

// build runs packaging/build.sh for amd64 into a temporary directory and
// returns the .deb.
func build(t *testing.T, env ...string) string {
	t.Helper()
	dist := t.TempDir()
	arch := runtime.GOARCH
	run(t, append(env, "GO="+goTool(), "ARCHES="+arch, "DIST="+dist), "./packaging/build.sh")
	debs, _ := filepath.Glob(filepath.Join(dist, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("build.sh made %v", debs)
	}
	return debs[0]
}

func debField(t *testing.T, deb, field string) string {
	return strings.TrimSpace(run(t, nil, "dpkg-deb", "-f", deb, field))
}

type want struct {
	path        string
	dir         bool
	owner, grp  string
	mode        os.FileMode
	packageOwns bool
}

func checkFile(t *testing.T, w want) {
	t.Helper()
	fi, err := os.Lstat(w.path)
	if err != nil {
		t.Errorf("%s: %v", w.path, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	owner, grp := strconv.Itoa(int(st.Uid)), strconv.Itoa(int(st.Gid))
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	if g, err := user.LookupGroupId(grp); err == nil {
		grp = g.Name
	}
	if fi.IsDir() != w.dir || (!w.dir && !fi.Mode().IsRegular()) || owner != w.owner || grp != w.grp || fi.Mode().Perm() != w.mode {
		t.Errorf("%s: %v %s:%s; want %s:%s %v (dir %v)", w.path, fi.Mode(), owner, grp, w.owner, w.grp, w.mode, w.dir)
	}
}

func TestPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the package test installs the package on this machine with dpkg -i: it needs root (CI runs as root)")
	}
	need(t, "dpkg", "dpkg-deb", "lintian", "systemd-analyze", "ocf-tester", "setpriv", "adduser")
	if topo == nil {
		t.Fatal("no MariaDB topology")
	}
	lock(t)
	if st := pkgStatus(); st != "" && !strings.HasPrefix(st, "unknown") && !strings.Contains(st, "not-installed") {
		t.Skipf("a sluice package is on this machine already (%s): the test would replace it", st)
	}
	for _, p := range []string{binPath, agentPath, filepath.Dir(agentPath), unitPath, "/etc/sluice", stateDir} {
		if _, err := os.Lstat(p); err == nil {
			t.Skipf("%s exists: the package test would overwrite a Sluice installed by hand", p)
		}
	}
	_, userErr := user.Lookup("sluice")
	hadUser := userErr == nil
	t.Cleanup(func() {
		// Leave the machine as it was, whatever failed.
		if st := pkgStatus(); strings.Contains(st, "installed") && !strings.Contains(st, "not-installed") || strings.Contains(st, "config-files") {
			out, err := runErr([]string{"SLUICE_PURGE_DATA=yes"}, "dpkg", "--purge", "sluice")
			if err != nil {
				t.Errorf("clean-up: dpkg --purge sluice: %v\n%s", err, out)
			}
		}
		os.RemoveAll(stateDir)
		os.RemoveAll("/etc/sluice")
		if !hadUser {
			runErr(nil, "deluser", "--system", "--quiet", "sluice")
			runErr(nil, "delgroup", "--system", "--quiet", "sluice")
		}
	})

	// Build: the version as make build and packaging/debversion.sh name it.
	describe := strings.TrimSpace(run(t, nil, "git", "describe", "--tags", "--always", "--dirty"))
	deb1 := build(t)
	v1 := debField(t, deb1, "Version")
	if rule := strings.TrimSpace(run(t, nil, "./packaging/debversion.sh", describe)); v1 != rule {
		t.Fatalf("package version %q, debversion.sh says %q for %q", v1, rule, describe)
	}

	// What the maintainer scripts do where systemd runs, and under Pacemaker.
	t.Run("maintainer scripts", func(t *testing.T) { testMaintainerScripts(t, deb1) })

	// lintian: no errors (warnings are logged).
	out, err := runErr(nil, "lintian", "--fail-on", "error", "--tag-display-limit", "0", deb1)
	if err != nil {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	t.Logf("lintian: %s", strings.TrimSpace(out))

	// Install.
	t.Logf("dpkg -i %s\n%s", filepath.Base(deb1), run(t, nil, "dpkg", "-i", deb1))
	if st := pkgStatus(); st != "install ok installed" {
		t.Fatalf("dpkg status %q", st)
	}
	checkInstalled(t)
	if v := run(t, nil, binPath, "version"); !strings.Contains(v, "sluice "+describe+" ") {
		t.Errorf("sluice version: %q, want %s", v, describe)
	}
	checkUnit(t)
	checkAgent(t)

	// Idempotent: configure again changes nothing.
	run(t, nil, "/var/lib/dpkg/info/sluice.postinst", "configure", v1)
	checkInstalled(t)

	// Upgrade to a newer version whose conffile changed, with the local copy
	// changed too: the local one stays, the new one lands beside it.
	local := []byte("# changed on this node\n")
	conf, _ := os.ReadFile(confPath)
	if err := os.WriteFile(confPath, append(conf, local...), 0o640); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(stateDir, "broker"), 0o750)
	keep := filepath.Join(stateDir, "broker", "keep")
	if err := os.WriteFile(keep, []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	newConf := filepath.Join(t.TempDir(), "sluice.yaml")
	os.WriteFile(newConf, append(conf, []byte("# next version's default\n")...), 0o644)
	v2 := v1 + ".1"
	deb2 := build(t, "VERSION="+describe+"-next", "PKG_VERSION="+v2, "CONFIG="+newConf)
	run(t, nil, "dpkg", "--compare-versions", v2, "gt", v1)
	t.Logf("upgrade: dpkg -i --force-confold\n%s", run(t, nil, "dpkg", "-i", "--force-confold", deb2))
	if got := strings.TrimSpace(run(t, nil, "dpkg-query", "-W", "-f=${Version}", "sluice")); got != v2 {
		t.Fatalf("installed version %q after the upgrade, want %q", got, v2)
	}
	if v := run(t, nil, binPath, "version"); !strings.Contains(v, describe+"-next") {
		t.Errorf("sluice version after the upgrade: %q", v)
	}
	if b, _ := os.ReadFile(confPath); !bytes.HasSuffix(b, local) {
		t.Errorf("the upgrade replaced the locally changed %s", confPath)
	}
	if b, err := os.ReadFile(confPath + ".dpkg-dist"); err != nil || !bytes.HasSuffix(b, []byte("# next version's default\n")) {
		t.Errorf("%s.dpkg-dist: %v %q", confPath, err, b)
	}
	checkInstalled(t)

	// Remove: the binary goes, config and data stay.
	run(t, nil, "dpkg", "--remove", "sluice")
	if st := pkgStatus(); !strings.Contains(st, "config-files") {
		t.Errorf("status after remove: %q", st)
	}
	for _, p := range []string{binPath, agentPath, unitPath} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s still there after remove", p)
		}
	}
	for _, p := range []string{confPath, keep} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("remove took %s: %v", p, err)
		}
	}

	// Purge: the config goes, the data stays (unless asked for).
	run(t, nil, "dpkg", "--purge", "sluice")
	if st := pkgStatus(); st != "" && !strings.Contains(st, "not-installed") {
		t.Errorf("status after purge: %q", st)
	}
	if _, err := os.Stat("/etc/sluice"); err == nil {
		t.Errorf("/etc/sluice still there after purge")
	}
	if out, _ := runErr(nil, "dpkg-statoverride", "--list", confPath); strings.TrimSpace(out) != "" {
		t.Errorf("statoverride left after purge: %s", out)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("purge took the data: %v", err)
	}
	// deb-systemd-helper's mask (remove) and state are gone.
	for _, p := range []string{"/etc/systemd/system/sluice.service", "/var/lib/systemd/deb-systemd-helper-masked/sluice.service",
		"/var/lib/systemd/deb-systemd-helper-enabled/sluice.service.dsh-also"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left after purge", p)
		}
	}

	// Purge with SLUICE_PURGE_DATA=yes: the data goes too.
	run(t, nil, "dpkg", "-i", deb2)
	checkInstalled(t)
	run(t, []string{"SLUICE_PURGE_DATA=yes"}, "dpkg", "--purge", "sluice")
	if _, err := os.Stat(stateDir); err == nil {
		t.Errorf("%s still there after a purge with SLUICE_PURGE_DATA=yes", stateDir)
	}
}

// checkInstalled checks every file the package installs or makes.
func checkInstalled(t *testing.T) {
	t.Helper()
	wants := []want{
		{path: binPath, owner: "root", grp: "root", mode: 0o755, packageOwns: true},
		{path: agentPath, owner: "root", grp: "root", mode: 0o755, packageOwns: true},
		{path: unitPath, owner: "root", grp: "root", mode: 0o644, packageOwns: true},
		{path: confPath, owner: "root", grp: "sluice", mode: 0o640, packageOwns: true},
		{path: "/etc/sluice", dir: true, owner: "root", grp: "root", mode: 0o755, packageOwns: true},
		{path: "/usr/share/bash-completion/completions/sluice", owner: "root", grp: "root", mode: 0o644, packageOwns: true},
		{path: "/usr/share/man/man1/sluice.1.gz", owner: "root", grp: "root", mode: 0o644, packageOwns: true},
		{path: "/usr/share/man/man1/sluice-serve.1.gz", owner: "root", grp: "root", mode: 0o644, packageOwns: true},
		{path: "/usr/share/doc/sluice/copyright", owner: "root", grp: "root", mode: 0o644, packageOwns: true},
		{path: "/usr/share/doc/sluice/changelog.gz", owner: "root", grp: "root", mode: 0o644, packageOwns: true},
		{path: stateDir, dir: true, owner: "sluice", grp: "sluice", mode: 0o750},
	}
	for _, w := range wants {
		checkFile(t, w)
	}
	// Every path dpkg lists: root's, directories 0755, files 0644 but the
	// two programs and the config; nothing listed but expected.
	expected := map[string]want{}
	for _, w := range wants {
		expected[w.path] = w
	}
	for _, p := range strings.Fields(run(t, nil, "dpkg-query", "-L", "sluice")) {
		if w, ok := expected[p]; ok {
			if !w.packageOwns {
				t.Errorf("dpkg lists %s, which postinst makes", p)
			}
			continue
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("dpkg lists %s: %v", p, err)
			continue
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			fi, err = os.Stat(p) // /lib -> usr/lib on a merged /usr
		}
		if err == nil && fi.IsDir() {
			continue // shared directories (/usr, /etc, ...) keep their own
		}
		if !strings.HasPrefix(p, "/usr/share/man/man1/sluice") && !strings.HasPrefix(p, "/usr/share/doc/sluice/") {
			t.Errorf("unexpected file %s in the package", p)
		}
		checkFile(t, want{path: p, owner: "root", grp: "root", mode: 0o644})
	}
	if c := run(t, nil, "dpkg-query", "-W", "-f=${Conffiles}", "sluice"); !strings.Contains(c, confPath+" ") {
		t.Errorf("%s is not a conffile: %q", confPath, c)
	}

	// The service user: a system account without a login.
	u, err := user.Lookup("sluice")
	if err != nil {
		t.Fatalf("no sluice user: %v", err)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 || uid == 0 || u.HomeDir != stateDir {
		t.Errorf("sluice user: uid %s home %s", u.Uid, u.HomeDir)
	}
	if pw := run(t, nil, "getent", "passwd", "sluice"); !strings.HasSuffix(strings.TrimSpace(pw), ":/usr/sbin/nologin") {
		t.Errorf("sluice user's shell: %s", pw)
	}

	// The shipped config keeps the state under /var/lib/sluice, and the
	// service user can read and validate it.
	conf, _ := os.ReadFile(confPath)
	for _, re := range []string{`(?m)^  data_dir: /var/lib/sluice/`, `(?m)^  spill_file: /var/lib/sluice/`} {
		if !regexp.MustCompile(re).Match(conf) {
			t.Errorf("%s does not match %s", confPath, re)
		}
	}
	run(t, nil, "setpriv", "--reuid=sluice", "--regid=sluice", "--init-groups", binPath, "serve", "--check-config", "--config", confPath)
	if b, _ := os.ReadFile("/usr/share/bash-completion/completions/sluice"); !bytes.Contains(b, []byte("__start_sluice")) {
		t.Errorf("bash completion does not define __start_sluice")
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for sluice\.service: ([0-9.]+)`)

// checkUnit verifies the installed unit and scores its hardening.
func checkUnit(t *testing.T) {
	t.Helper()
	out, err := runErr([]string{"SYSTEMD_LOG_LEVEL=warning"}, "systemd-analyze", "verify", unitPath)
	if err != nil || strings.Contains(out, "sluice.service") {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
	}
	unit, _ := os.ReadFile(unitPath)
	for _, line := range []string{"User=sluice", "ExecStart=/usr/bin/sluice serve --config /etc/sluice/sluice.yaml",
		"ReadWritePaths=/var/lib/sluice", "LimitNOFILE=1048576", "ProtectSystem=strict", "SystemCallFilter=@system-service"} {
		if !bytes.Contains(unit, []byte("\n"+line+"\n")) {
			t.Errorf("%s lacks %s", unitPath, line)
		}
	}
	if bytes.Contains(unit, []byte("\nAmbientCapabilities=")) {
		t.Errorf("%s grants capabilities by default", unitPath)
	}
	out = run(t, nil, "systemd-analyze", "security", "--offline=true", unitPath)
	m := exposure.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no score\n%s", out)
	}
	score, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("systemd-analyze security: exposure %s", m[1])
	if score > 2.0 {
		t.Errorf("systemd-analyze security: exposure %.1f, want 2.0 or less\n%s", score, out)
	}
}

// checkAgent runs ocf-tester against the installed agent, with its default
// binary (/usr/bin/sluice) and a config for the test topology, as the
// sluice user.
func checkAgent(t *testing.T) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sluice-pkg-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	listen, admin := lab.FreeAddr(t), lab.FreeAddr(t)
	cfg := fmt.Sprintf("listen: %s\nadmin_listen: %s\nservers:\n  - name: db1\n    address: %s\n"+
		"service_user:\n  user: %s\n  password: %s\nmonitor:\n  interval: 200ms\ngenlog:\n  enabled: false\nbroker:\n  enabled: false\n",
		listen, admin, topo.Primary.Addr(), lab.MonitorUser, lab.MonitorPassword)
	config := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-v", "-n", "p_sluice",
		"-o", "config=" + config,
		"-o", "daemon_user=sluice",
		"-o", "pidfile=" + filepath.Join(dir, "run", "sluice.pid"),
		"-o", "logfile=" + filepath.Join(dir, "log", "sluice.log"),
		"-o", "workdir=" + filepath.Join(dir, "work"),
		"-o", "user=" + lab.AppUser, "-o", "password=" + lab.AppPassword,
		agentPath}
	out, err := runErr([]string{"OCF_ROOT=/usr/lib/ocf", "HA_RSCTMP=" + filepath.Join(dir, "rsctmp")}, "ocf-tester", args...)
	if err != nil || !strings.Contains(out, "passed all tests") {
		log, _ := os.ReadFile(filepath.Join(dir, "log", "sluice.log"))
		t.Errorf("ocf-tester on the installed agent: %v\n%s\nsluice log:\n%s", err, out, log)
	}
	if b, _ := os.ReadFile(agentPath); !bytes.Contains(b, []byte(`OCF_RESKEY_binary_default="/usr/bin/sluice"`)) {
		t.Errorf("the installed agent does not default to /usr/bin/sluice")
	}
}
