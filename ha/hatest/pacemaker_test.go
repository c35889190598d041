package hatest

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// cluster is a single-node Corosync + Pacemaker cluster started by
// testdata/cluster.sh in a private mount namespace.
type cluster struct {
	t    *testing.T
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error  // cluster.sh's exit, once done is closed
	ns   string // its mount namespace (/proc/PID/ns/mnt), once known
	out  *os.File
	once sync.Once
}

// tool runs a Pacemaker command-line tool, bounded by 20s.
func tool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	path, ok := lookTool(name)
	if !ok {
		t.Fatalf("%s is missing", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), err
}

// runningCluster names a Corosync or Pacemaker process already running here.
func runningCluster() string {
	procs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		switch comm := strings.TrimSpace(string(b)); comm {
		case "corosync", "pacemakerd", "pacemaker-contr", "pacemaker-execd":
			return fmt.Sprintf("%s (pid %s)", comm, filepath.Base(filepath.Dir(p)))
		}
	}
	return ""
}

// hasCapNetAdmin reports whether this process may add addresses (IPaddr2).
func hasCapNetAdmin() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<12) != 0 // CAP_NET_ADMIN
		}
	}
	return false
}

// startCluster seeds the CIB with cibadmin (no fencing: one node, nothing to
// fence; a short dc-deadtime, so the node elects itself in seconds rather
// than 20) and starts Corosync and Pacemaker. It skips t when the cluster
// cannot start here, with the reason.
func startCluster(t *testing.T, dir string) *cluster {
	t.Helper()
	seed := filepath.Join(dir, "cib.xml")
	empty, err := tool(t, "cibadmin", "--empty")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seed, []byte(empty), 0o644); err != nil {
		t.Fatal(err)
	}
	cibadmin, _ := lookTool("cibadmin")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seedCmd := exec.CommandContext(ctx, cibadmin, "--modify", "--xml-text", `<cib><configuration><crm_config>
<cluster_property_set id="cib-bootstrap-options">
<nvpair id="opt-stonith-enabled" name="stonith-enabled" value="false"/>
<nvpair id="opt-dc-deadtime" name="dc-deadtime" value="2s"/>
</cluster_property_set></crm_config>
<rsc_defaults><meta_attributes id="rsc-options">
<nvpair id="rsc-options-resource-stickiness" name="resource-stickiness" value="100"/>
</meta_attributes></rsc_defaults></configuration></cib>`)
	seedCmd.Env = append(os.Environ(), "CIB_file="+seed)
	if out, err := seedCmd.CombinedOutput(); err != nil {
		t.Fatalf("seeding the CIB: %v\n%s", err, out)
	}

	script, err := filepath.Abs(filepath.Join("testdata", "cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir, done: make(chan struct{})}
	if c.out, err = os.Create(filepath.Join(dir, "cluster.out")); err != nil {
		t.Fatal(err)
	}
	unshare, _ := lookTool("unshare")
	c.cmd = exec.Command(unshare, "--mount", "--propagation", "private", "bash", script, dir, agentPath)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	// Its own process group, so a Ctrl-C in a terminal reaches only the
	// test, whose cleanup stops the cluster in order; SIGTERM (the same
	// orderly stop) if the test process dies without cleaning up.
	c.cmd.SysProcAttr = lab.DieWithParent(&syscall.SysProcAttr{Setpgid: true}, syscall.SIGTERM)
	if err := lab.Spawn(c.cmd); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(c.stop)

	// The node elects itself DC and is online.
	self, _ := os.Readlink("/proc/self/ns/mnt")
	deadline := time.Now().Add(90 * time.Second)
	for {
		if c.ns == "" {
			if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", c.cmd.Process.Pid)); err == nil && ns != self {
				c.ns = ns
			}
		}
		select {
		case <-c.done:
			t.Skipf("the cluster could not start here: cluster.sh: %v: %s", c.err, c.output())
		default:
		}
		if mon, err := c.status(); err == nil && mon.Summary.DC.Present == "true" &&
			len(mon.Nodes) == 1 && mon.Nodes[0].Online == "true" {
			break
		}
		if time.Now().After(deadline) {
			out, err := tool(t, "crm_mon", "-1")
			t.Fatalf("no DC within 90s: %v\n%s\n%s", err, out, c.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

// output is what cluster.sh said, and the end of the daemons' logs.
func (c *cluster) output() string {
	var b strings.Builder
	out, _ := os.ReadFile(filepath.Join(c.dir, "cluster.out"))
	b.Write(bytes.TrimSpace(out))
	for _, name := range []string{"corosync.out", "pacemakerd.out"} {
		if log, err := os.ReadFile(filepath.Join(c.dir, "log", name)); err == nil && len(bytes.TrimSpace(log)) > 0 {
			fmt.Fprintf(&b, "\n%s: %s", name, lastLines(string(log), 5))
		}
	}
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop asks cluster.sh to stop Pacemaker (which stops the resources) and
// Corosync; whatever still runs in its mount namespace after that, or after
// a minute, is killed.
func (c *cluster) stop() { c.once.Do(c.doStop) }

func (c *cluster) doStop() {
	t := c.t
	select {
	case <-c.done:
	default:
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(60 * time.Second):
			t.Errorf("the cluster did not stop within 60s: killing it")
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
	if c.ns != "" {
		procs, _ := filepath.Glob("/proc/[0-9]*/ns/mnt")
		for _, p := range procs {
			if ns, err := os.Readlink(p); err == nil && ns == c.ns {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
				if pid > 0 && alive(pid) {
					t.Logf("killing pid %d, left in the cluster's namespace", pid)
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	c.out.Close()
	if t.Failed() {
		t.Logf("cluster:\n%s", c.output())
		if log, err := os.ReadFile(filepath.Join(c.dir, "log", "pacemaker.log")); err == nil {
			var keep []string
			for _, l := range strings.Split(string(log), "\n") {
				if strings.Contains(l, "notice") || strings.Contains(l, "error") || strings.Contains(l, "warning") {
					keep = append(keep, l)
				}
			}
			t.Logf("pacemaker.log (notices, warnings, errors):\n%s", lastLines(strings.Join(keep, "\n"), 80))
		}
	}
}

// crmMon is the part of `crm_mon --output-as=xml` the test reads.
type crmMon struct {
	Summary struct {
		DC struct {
			Present string `xml:"present,attr"`
		} `xml:"current_dc"`
	} `xml:"summary"`
	Nodes []struct {
		Name   string `xml:"name,attr"`
		Online string `xml:"online,attr"`
	} `xml:"nodes>node"`
	Resources []monResource `xml:"resources>resource"`
	Clones    []struct {
		ID        string        `xml:"id,attr"`
		Resources []monResource `xml:"resource"`
	} `xml:"resources>clone"`
}

type monResource struct {
	ID     string `xml:"id,attr"`
	Role   string `xml:"role,attr"`
	Active string `xml:"active,attr"`
	Failed string `xml:"failed,attr"`
	Node   struct {
		Name string `xml:"name,attr"`
	} `xml:"node"`
}

func (c *cluster) status() (*crmMon, error) {
	out, err := tool(c.t, "crm_mon", "-1", "--output-as=xml")
	if err != nil {
		return nil, err
	}
	var m crmMon
	if err := xml.Unmarshal([]byte(out), &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// started reports whether the primitive id (or a clone instance of it) is
// started on node1.
func (m *crmMon) started(id string) bool {
	all := m.Resources
	for _, cl := range m.Clones {
		all = append(all, cl.Resources...)
	}
	for _, r := range all {
		if r.ID == id && r.Role == "Started" && r.Active == "true" && r.Failed == "false" && r.Node.Name == "node1" {
			return true
		}
	}
	return false
}

// cibStatus is the part of the CIB's status section the test reads: the
// operation history per resource.
type cibStatus struct {
	Nodes []struct {
		Resources []struct {
			ID  string `xml:"id,attr"`
			Ops []struct {
				ID        string `xml:"id,attr"`
				Operation string `xml:"operation,attr"`
				CallID    string `xml:"call-id,attr"`
				RC        string `xml:"rc-code,attr"`
			} `xml:"lrm_rsc_op"`
		} `xml:"lrm>lrm_resources>lrm_resource"`
	} `xml:"node_state"`
}

// lastOp is "operation call-id" of the resource's last start or stop.
func lastOp(t *testing.T, rsc string) string {
	t.Helper()
	out, err := tool(t, "cibadmin", "--query", "--scope", "status")
	if err != nil {
		t.Fatal(err)
	}
	var st cibStatus
	if err := xml.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		for _, r := range n.Resources {
			if r.ID != rsc {
				continue
			}
			for _, op := range r.Ops {
				if op.ID == rsc+"_last_0" {
					return op.Operation + " " + op.CallID
				}
			}
		}
	}
	return ""
}

// loAddrs lists the addresses on lo.
func loAddrs(t *testing.T) string {
	out, _ := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output()
	return string(out)
}

// TestPacemakerRestartsKilledClone runs the configuration of ha/README.md
// (a cloned Sluice, a virtual IP colocated with and ordered after a running
// instance, stickiness) on a real single-node Corosync + Pacemaker cluster,
// kills Sluice with SIGKILL and checks that Pacemaker notices, restarts it
// in place, that clients are served again, and that the virtual IP never
// moved nor restarted.
func TestPacemakerRestartsKilledClone(t *testing.T) {
	needAgentTools(t)
	need(t, "pacemaker, corosync and util-linux", "corosync", "corosync-cfgtool", "pacemakerd", "cibadmin",
		"crm_mon", "crm_failcount", "unshare", "mount")
	if os.Geteuid() != 0 {
		t.Skip("the cluster test needs root (corosync, pacemakerd, a private mount namespace)")
	}
	if p := runningCluster(); p != "" {
		t.Skipf("a cluster already runs on this machine (%s); the test needs its own", p)
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		t.Skipf("the cluster test runs in a private mount namespace, so as never to touch this machine's "+
			"cluster configuration, and this machine cannot make one: unshare --mount: %v: %s", err, bytes.TrimSpace(out))
	}

	// The daemons running as hacluster read and write under dir.
	dir, err := os.MkdirTemp("", "sluice-pacemaker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)

	// The virtual IP: IPaddr2 on lo when this process may add addresses,
	// else a Dummy stand-in. Sluice listens on it (all of 127/8 is local).
	vip := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(150), rand.IntN(256), 1+rand.IntN(254))
	_, port, _ := net.SplitHostPort(lab.FreeAddr(t))
	listen, admin := net.JoinHostPort(vip, port), lab.FreeAddr(t)
	useIPaddr2 := hasCapNetAdmin()
	if _, err := os.Stat(ocfRoot + "/resource.d/heartbeat/IPaddr2"); err != nil {
		useIPaddr2 = false
	}
	if _, ok := lookTool("ip"); !ok {
		useIPaddr2 = false
	}
	if !useIPaddr2 {
		t.Logf("no CAP_NET_ADMIN, IPaddr2 or ip here: the virtual IP is an ocf:pacemaker:Dummy stand-in")
	}

	config := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(config, []byte(sluiceConfig(listen, admin, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	pidfile, logfile := filepath.Join(dir, "sluice.pid"), filepath.Join(dir, "sluice.log")
	// Runs after the cluster stopped: nothing of ours may survive the test.
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logfile)
			t.Logf("sluice log:\n%s", lastLines(string(b), 40))
		}
		if b, err := os.ReadFile(pidfile); err == nil {
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 && alive(pid) {
				t.Errorf("sluice (pid %d) survived the cluster's shutdown", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if useIPaddr2 && strings.Contains(loAddrs(t), " "+vip+"/") {
			t.Errorf("the virtual IP %s survived the cluster's shutdown", vip)
			exec.Command("ip", "addr", "del", vip+"/32", "dev", "lo").Run()
		}
	})

	began := time.Now()
	c := startCluster(t, dir)
	t.Logf("single-node cluster up, DC elected, in %v", time.Since(began).Round(time.Millisecond))

	// The examples load in crm and pcs, and say the same thing.
	var example []string
	t.Run("examples", func(t *testing.T) { example = c.checkExamples(t) })

	// The example configuration, with cibadmin, for this machine.
	param := func(id, name, value string) string {
		return fmt.Sprintf(`<nvpair id="%s-%s" name="%s" value="%s"/>`, id, name, name, value)
	}
	vipXML := `<primitive id="p_vip" class="ocf" provider="pacemaker" type="Dummy">
<operations><op id="p_vip-monitor-5s" name="monitor" interval="5s" timeout="20s"/></operations></primitive>`
	if useIPaddr2 {
		vipXML = `<primitive id="p_vip" class="ocf" provider="heartbeat" type="IPaddr2">
<instance_attributes id="p_vip-params">` + param("p_vip", "ip", vip) + param("p_vip", "nic", "lo") +
			param("p_vip", "cidr_netmask", "32") + `</instance_attributes>
<operations><op id="p_vip-monitor-5s" name="monitor" interval="5s" timeout="20s"/></operations></primitive>`
	}
	resources := `<resources>
<clone id="cl_sluice">
<meta_attributes id="cl_sluice-meta">` + param("cl_sluice", "interleave", "true") + param("cl_sluice", "clone-min", "1") + `</meta_attributes>
<primitive id="p_sluice" class="ocf" provider="sluice" type="sluice">
<instance_attributes id="p_sluice-params">` +
		param("p_sluice", "binary", sluiceBin) + param("p_sluice", "config", config) +
		param("p_sluice", "pidfile", pidfile) + param("p_sluice", "logfile", logfile) +
		param("p_sluice", "workdir", filepath.Join(dir, "work")) +
		param("p_sluice", "user", lab.AppUser) + param("p_sluice", "password", lab.AppPassword) + `
</instance_attributes>
<operations>
<op id="p_sluice-start-0" name="start" interval="0s" timeout="30s"/>
<op id="p_sluice-stop-0" name="stop" interval="0s" timeout="40s"/>
<op id="p_sluice-monitor-1s" name="monitor" interval="1s" timeout="20s"/>
<op id="p_sluice-monitor-5s" name="monitor" interval="5s" timeout="30s">
<instance_attributes id="p_sluice-monitor-5s-params"><nvpair id="p_sluice-monitor-5s-depth" name="OCF_CHECK_LEVEL" value="20"/></instance_attributes>
</op>
</operations>
</primitive>
</clone>
` + vipXML + `
</resources>`
	constraints := `<constraints>
<rsc_colocation id="col_vip_with_sluice" rsc="p_vip" with-rsc="cl_sluice" score="INFINITY"/>
<rsc_order id="ord_sluice_before_vip" first="cl_sluice" first-action="start" then="p_vip" then-action="start" kind="Mandatory"/>
</constraints>`
	if _, err := tool(t, "cibadmin", "--replace", "--scope", "resources", "--xml-text", resources); err != nil {
		t.Fatal(err)
	}
	if _, err := tool(t, "cibadmin", "--replace", "--scope", "constraints", "--xml-text", constraints); err != nil {
		t.Fatal(err)
	}
	if out, err := tool(t, "crm_verify", "--live-check", "--verbose"); err != nil {
		t.Fatalf("crm_verify: %v\n%s", err, out)
	}
	// The clone, its constraints and the defaults are the example's.
	if example != nil {
		liveCIB := filepath.Join(dir, "live-cib.xml")
		out, err := tool(t, "cibadmin", "--query")
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(liveCIB, []byte(out), 0o644)
		live := summary(t, liveCIB)
		for _, l := range example {
			if strings.HasPrefix(l, "clone ") || strings.HasPrefix(l, "meta cl_sluice ") ||
				strings.HasPrefix(l, "colocation ") || strings.HasPrefix(l, "order ") || strings.HasPrefix(l, "rsc_defaults ") {
				if !slices.Contains(live, l) {
					t.Errorf("the live configuration lacks the example's %q", l)
				}
			}
		}
	}

	serving := func() bool {
		return healthStatus(admin) == http.StatusOK && selectOne(listen) == nil
	}
	readPid := func() int {
		b, _ := os.ReadFile(pidfile)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	lab.WaitFor(t, "Pacemaker to start the clone and the virtual IP, and clients to be served", 60*time.Second, func() bool {
		m, err := c.status()
		return err == nil && m.started("p_sluice") && m.started("p_vip") && serving() &&
			(!useIPaddr2 || strings.Contains(loAddrs(t), " "+vip+"/"))
	})
	vipOp := lastOp(t, "p_vip")
	if !strings.HasPrefix(vipOp, "start ") {
		t.Fatalf("p_vip's last operation is %q", vipOp)
	}
	pid := readPid()
	t.Logf("Pacemaker runs sluice as pid %d behind %s, %v after the cluster started", pid, listen, time.Since(began).Round(time.Millisecond))

	// SIGKILL: no drain, the pid file stays behind.
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "Pacemaker to restart sluice and clients to be served again", 60*time.Second, func() bool {
		p := readPid()
		return p != 0 && p != pid && alive(p) && serving()
	})
	t.Logf("clients served again %v after the SIGKILL, by pid %d", time.Since(killed).Round(time.Millisecond), readPid())
	// The start operation returns just after the process serves.
	lab.WaitFor(t, "Pacemaker to record the recovery", 30*time.Second, func() bool {
		m, err := c.status()
		return err == nil && m.started("p_sluice") && m.started("p_vip")
	})

	out, err := tool(t, "crm_failcount", "--query", "--resource", "p_sluice", "--node", "node1")
	if err != nil || !strings.Contains(out, "value=1") {
		t.Errorf("fail count after one kill: %q %v", out, err)
	}
	// Recovered in place: the virtual IP neither moved nor restarted
	// (clone-min=1: one running instance is enough for it).
	if op := lastOp(t, "p_vip"); op != vipOp {
		t.Errorf("p_vip's last operation went from %q to %q: it restarted", vipOp, op)
	}
	if useIPaddr2 && !strings.Contains(loAddrs(t), " "+vip+"/") {
		t.Errorf("%s is no longer on lo:\n%s", vip, loAddrs(t))
	}

	// A clean shutdown stops both (checked in the cleanups).
	c.stop()
	select {
	case <-c.done:
	default:
		t.Fatal("cluster.sh still runs after stop")
	}
	if c.err != nil {
		t.Errorf("cluster.sh: %v\n%s", c.err, c.output())
	}
}
