package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stub answers for the commands the maintainer scripts call, and logs each
// call to $STUB_LOG. systemctl's answers come from STUB_ACTIVE and
// STUB_ENABLED (yes or no), cibadmin's from STUB_CIB (empty: no cluster).
const stub = `#!/bin/sh
echo "$(basename "$0") $*" >>"$STUB_LOG"
case "$(basename "$0")" in
getent) exit 2 ;;
systemctl)
	case "$1" in
	is-active) [ "$STUB_ACTIVE" = yes ]; exit ;;
	is-enabled) [ "$STUB_ENABLED" = yes ]; exit ;;
	esac ;;
cibadmin)
	[ -n "$STUB_CIB" ] || exit 1
	printf '%s\n' "$STUB_CIB" ;;
crm_resource) exit 1 ;;
deb-systemd-helper)
	case "$1" in debian-installed | --quiet) exit 1 ;; esac ;;
esac
exit 0
`

// scriptCase is one run of a maintainer script.
type scriptCase struct {
	name    string
	script  string   // postinst, prerm, postrm
	args    []string // dpkg's arguments
	systemd bool     // /run/systemd/system exists (systemd is PID 1)
	active  bool     // sluice.service is active
	enabled bool     // sluice.service is enabled
	cib     string   // the live CIB's resources (cibadmin), "" without a cluster
	saved   string   // /var/lib/pacemaker/cib/cib.xml, "" when absent
	want    []string // calls that must be logged
	never   []string // calls that must not be
}

const (
	ocfPrimitive     = `<resources><clone id="cl_sluice"><primitive id="p_sluice" class="ocf" provider="sluice" type="sluice"/></clone></resources>`
	systemdPrimitive = `<cib><configuration><resources><primitive id="p_sluice" class="systemd" type="sluice"/></resources></configuration></cib>`
	otherPrimitive   = `<resources><primitive id="p_vip" class="ocf" provider="heartbeat" type="IPaddr2"/></resources>`
)

// testMaintainerScripts runs the package's scripts (from deb) with the
// commands they call stubbed, each in a private mount namespace whose /run
// and /var/lib/pacemaker are empty tmpfs, so that "systemd runs" and "a
// cluster's saved CIB" can be staged without touching this machine.
func testMaintainerScripts(t *testing.T, deb string) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare (util-linux)")
	}
	dir := t.TempDir()
	control := filepath.Join(dir, "control")
	run(t, nil, "dpkg-deb", "-e", deb, control)
	stubs := filepath.Join(dir, "stubs")
	os.Mkdir(stubs, 0o755)
	for _, name := range []string{"getent", "addgroup", "adduser", "install", "dpkg-statoverride", "systemctl",
		"deb-systemd-helper", "deb-systemd-invoke", "cibadmin", "crm_resource"} {
		if err := os.WriteFile(filepath.Join(stubs, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runErr(nil, "unshare", "-m", "--propagation", "private", "true"); err != nil {
		t.Skipf("no private mount namespace here (unshare -m: %v %s)", err, out)
	}

	restart, stop, start := "deb-systemd-invoke restart sluice.service", "deb-systemd-invoke stop sluice.service", "deb-systemd-invoke start"
	for _, c := range []scriptCase{
		{name: "install", script: "postinst", args: []string{"configure", ""}, systemd: true,
			want:  []string{"addgroup --system --quiet sluice", "adduser --system", "deb-systemd-helper update-state sluice.service", "systemctl --system daemon-reload"},
			never: []string{"deb-systemd-invoke", "deb-systemd-helper enable"}},
		{name: "install without systemd", script: "postinst", args: []string{"configure", ""},
			want: []string{"adduser --system", "deb-systemd-helper update-state sluice.service"}, never: []string{"systemctl", "deb-systemd-invoke"}},
		{name: "upgrade, running", script: "postinst", args: []string{"configure", "0.1"}, systemd: true, active: true, enabled: true,
			want: []string{restart}},
		{name: "upgrade, running by hand, not enabled", script: "postinst", args: []string{"configure", "0.1"}, systemd: true, active: true, cib: otherPrimitive,
			want: []string{restart}},
		{name: "upgrade, stopped", script: "postinst", args: []string{"configure", "0.1"}, systemd: true, enabled: true,
			never: []string{"deb-systemd-invoke"}},
		{name: "upgrade without systemd", script: "postinst", args: []string{"configure", "0.1"}, active: true, enabled: true,
			never: []string{"deb-systemd-invoke", "systemctl"}},
		{name: "upgrade under Pacemaker (ocf)", script: "postinst", args: []string{"configure", "0.1"}, systemd: true, cib: ocfPrimitive,
			want: []string{"cibadmin --query --scope resources"}, never: []string{"deb-systemd-invoke"}},
		{name: "upgrade under Pacemaker (systemd:sluice, running)", script: "postinst", args: []string{"configure", "0.1"}, systemd: true, active: true,
			cib: strings.ReplaceAll(systemdPrimitive, "<cib><configuration>", ""), never: []string{restart, start}},
		{name: "upgrade under a stopped cluster (saved CIB)", script: "postinst", args: []string{"configure", "0.1"}, systemd: true, active: true,
			saved: systemdPrimitive, never: []string{restart, start}},
		{name: "remove, running", script: "prerm", args: []string{"remove"}, systemd: true, active: true, enabled: true,
			want: []string{stop}},
		{name: "remove under Pacemaker", script: "prerm", args: []string{"remove"}, systemd: true, active: true, cib: ocfPrimitive,
			never: []string{stop}},
		{name: "upgrade's prerm", script: "prerm", args: []string{"upgrade", "0.2"}, systemd: true, active: true, enabled: true,
			never: []string{"deb-systemd-invoke"}},
		{name: "remove's postrm", script: "postrm", args: []string{"remove"}, systemd: true,
			want: []string{"deb-systemd-helper mask sluice.service"}, never: []string{"deb-systemd-invoke"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "calls")
			os.WriteFile(log, nil, 0o644)
			var setup strings.Builder
			if _, err := os.Stat("/var/lib/pacemaker"); err != nil && c.saved != "" {
				t.Skip("no /var/lib/pacemaker here to stage a saved CIB in")
			}
			setup.WriteString("set -e; mount -t tmpfs tmpfs /run; if [ -d /var/lib/pacemaker ]; then mount -t tmpfs tmpfs /var/lib/pacemaker; fi\n")
			if c.systemd {
				setup.WriteString("mkdir -p /run/systemd/system\n")
			}
			if c.saved != "" {
				fmt.Fprintf(&setup, "mkdir -p /var/lib/pacemaker/cib; cat >/var/lib/pacemaker/cib/cib.xml <<'CIB'\n%s\nCIB\n", c.saved)
			}
			setup.WriteString(`exec "$@"` + "\n")
			yes := func(b bool) string {
				if b {
					return "yes"
				}
				return "no"
			}
			args := append([]string{"-m", "--propagation", "private", "sh", "-c", setup.String(), "sh", filepath.Join(control, c.script)}, c.args...)
			out, err := runErr([]string{"PATH=" + stubs + ":/usr/bin:/bin", "STUB_LOG=" + log, "STUB_ACTIVE=" + yes(c.active),
				"STUB_ENABLED=" + yes(c.enabled), "STUB_CIB=" + c.cib}, "unshare", args...)
			b, _ := os.ReadFile(log)
			calls := string(b)
			if err != nil {
				t.Fatalf("%s %v: %v\n%s\ncalls:\n%s", c.script, c.args, err, out, calls)
			}
			for _, w := range c.want {
				if !strings.Contains(calls, w) {
					t.Errorf("%s %v did not call %q; calls:\n%s", c.script, c.args, w, calls)
				}
			}
			for _, n := range c.never {
				if strings.Contains(calls, n) {
					t.Errorf("%s %v called %q; calls:\n%s", c.script, c.args, n, calls)
				}
			}
		})
	}
}
