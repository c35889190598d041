package hatest

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// cibConfig is the configuration section of a CIB, as far as the examples
// go.
type cibConfig struct {
	Primitives []cibPrimitive `xml:"configuration>resources>primitive"`
	Clones     []struct {
		ID        string       `xml:"id,attr"`
		Meta      []nvpair     `xml:"meta_attributes>nvpair"`
		Primitive cibPrimitive `xml:"primitive"`
	} `xml:"configuration>resources>clone"`
	Colocations []struct {
		Rsc     string `xml:"rsc,attr"`
		WithRsc string `xml:"with-rsc,attr"`
		Score   string `xml:"score,attr"`
	} `xml:"configuration>constraints>rsc_colocation"`
	Orders []struct {
		First       string `xml:"first,attr"`
		FirstAction string `xml:"first-action,attr"`
		Then        string `xml:"then,attr"`
		ThenAction  string `xml:"then-action,attr"`
		Kind        string `xml:"kind,attr"`
	} `xml:"configuration>constraints>rsc_order"`
	RscDefaults []nvpair `xml:"configuration>rsc_defaults>meta_attributes>nvpair"`
}

type nvpair struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type cibPrimitive struct {
	ID       string   `xml:"id,attr"`
	Class    string   `xml:"class,attr"`
	Provider string   `xml:"provider,attr"`
	Type     string   `xml:"type,attr"`
	Params   []nvpair `xml:"instance_attributes>nvpair"`
	Meta     []nvpair `xml:"meta_attributes>nvpair"`
	Ops      []struct {
		Name     string   `xml:"name,attr"`
		Interval string   `xml:"interval,attr"`
		Timeout  string   `xml:"timeout,attr"`
		Params   []nvpair `xml:"instance_attributes>nvpair"`
	} `xml:"operations>op"`
}

// summary is the configuration in a CIB file as sorted lines, without the
// defaults each tool adds on its own (pcs writes every action's default
// operation): what the crm and pcs examples must agree on.
func summary(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c cibConfig
	if err := xml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	prim := func(p cibPrimitive) {
		add("primitive %s %s:%s:%s", p.ID, p.Class, p.Provider, p.Type)
		for _, nv := range p.Params {
			add("param %s %s=%s", p.ID, nv.Name, nv.Value)
		}
		for _, nv := range p.Meta {
			add("meta %s %s=%s", p.ID, nv.Name, nv.Value)
		}
		for _, op := range p.Ops {
			if op.Name != "monitor" && (p.Type != "sluice" || (op.Name != "start" && op.Name != "stop")) {
				continue
			}
			l := fmt.Sprintf("op %s %s interval=%s timeout=%s", p.ID, op.Name, op.Interval, op.Timeout)
			for _, nv := range op.Params {
				l += fmt.Sprintf(" %s=%s", nv.Name, nv.Value)
			}
			add("%s", l)
		}
	}
	for _, p := range c.Primitives {
		prim(p)
	}
	for _, cl := range c.Clones {
		add("clone %s of %s", cl.ID, cl.Primitive.ID)
		for _, nv := range cl.Meta {
			add("meta %s %s=%s", cl.ID, nv.Name, nv.Value)
		}
		prim(cl.Primitive)
	}
	for _, co := range c.Colocations {
		add("colocation %s with %s %s", co.Rsc, co.WithRsc, co.Score)
	}
	for _, o := range c.Orders {
		fa, ta := o.FirstAction, o.ThenAction
		if fa == "" {
			fa = "start"
		}
		if ta == "" {
			ta = fa
		}
		add("order %s %s then %s %s %s", fa, o.First, ta, o.Then, o.Kind)
	}
	for _, nv := range c.RscDefaults {
		add("rsc_defaults %s=%s", nv.Name, nv.Value)
	}
	slices.Sort(lines)
	return lines
}

// inNamespace runs a command in the cluster's mount namespace, where the
// agent is installed as ocf:sluice:sluice (crm and pcs read its meta-data).
func (c *cluster) inNamespace(env []string, name string, args ...string) error {
	if c.ns == "" {
		return fmt.Errorf("the cluster's mount namespace is unknown")
	}
	nsenter, ok := lookTool("nsenter")
	if !ok {
		return fmt.Errorf("nsenter is missing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nsenter, append([]string{fmt.Sprintf("--mount=/proc/%d/ns/mnt", c.cmd.Process.Pid), "--", name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = "/"
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// checkExamples loads each crm shell example and its pcs twin into copies
// of the live CIB, checks both with crm_verify and checks that they say the
// same thing.
func (c *cluster) checkExamples(t *testing.T) []string {
	need(t, "crmsh and pcs", "crm", "pcs", "nsenter", "crm_verify")
	dir := t.TempDir()
	live, err := tool(t, "cibadmin", "--query")
	if err != nil {
		t.Fatal(err)
	}
	// pcs -f FILE for the commands of the pcs scripts.
	wrap := filepath.Join(dir, "bin")
	os.Mkdir(wrap, 0o755)
	pcs, _ := lookTool("pcs")
	if err := os.WriteFile(filepath.Join(wrap, "pcs"), []byte("#!/bin/sh\nexec "+pcs+" -f \"$PCS_CIB\" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	crm, _ := lookTool("crm")

	examples := []struct{ crm, pcs string }{
		{"sluice.crm", "pcs.sh"},
		{"sluice-reuseport.crm", "pcs-reuseport.sh"},
	}
	cibFile := func(example string) string { return filepath.Join(dir, example+".xml") }
	// Each load on its own copy, all at once (pcs takes a second or two
	// per command).
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(examples))
	for _, ex := range examples {
		for _, f := range []string{cibFile(ex.crm), cibFile(ex.pcs)} {
			if err := os.WriteFile(f, []byte(live), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		here := filepath.Dir(agentPath)
		wg.Go(func() {
			errs <- c.inNamespace([]string{"CIB_file=" + cibFile(ex.crm)}, crm, "configure", "load", "update", filepath.Join(here, ex.crm))
		})
		wg.Go(func() {
			errs <- c.inNamespace([]string{"PCS_CIB=" + cibFile(ex.pcs), "PATH=" + wrap + ":" + os.Getenv("PATH") + ":/usr/sbin:/sbin"},
				"sh", filepath.Join(here, ex.pcs))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	var basic []string
	for _, ex := range examples {
		crmCIB, pcsCIB := cibFile(ex.crm), cibFile(ex.pcs)
		for _, f := range []string{crmCIB, pcsCIB} {
			if out, err := tool(t, "crm_verify", "--verbose", "--xml-file", f); err != nil {
				t.Errorf("%s: %v\n%s", filepath.Base(f), err, out)
			}
		}
		fromCrm, fromPcs := summary(t, crmCIB), summary(t, pcsCIB)
		if !slices.Equal(fromCrm, fromPcs) {
			t.Errorf("%s and %s differ:\ncrm:\n  %s\npcs:\n  %s", ex.crm, ex.pcs,
				strings.Join(fromCrm, "\n  "), strings.Join(fromPcs, "\n  "))
		}
		if ex.crm == "sluice.crm" {
			basic = fromCrm
		}
	}
	for _, want := range []string{
		"clone cl_sluice of p_sluice",
		"meta cl_sluice interleave=true",
		"meta cl_sluice clone-min=1",
		"primitive p_sluice ocf:sluice:sluice",
		"op p_sluice monitor interval=30s timeout=30s OCF_CHECK_LEVEL=10",
		"primitive p_vip ocf:heartbeat:IPaddr2",
		"colocation p_vip with cl_sluice INFINITY",
		"order start cl_sluice then start p_vip Mandatory",
		"rsc_defaults resource-stickiness=100",
	} {
		if !slices.Contains(basic, want) {
			t.Errorf("sluice.crm lacks %q:\n  %s", want, strings.Join(basic, "\n  "))
		}
	}
	return basic
}

// TestSystemdUnit checks ha/sluice.service with systemd-analyze verify,
// pointed at this checkout's binary.
func TestSystemdUnit(t *testing.T) {
	need(t, "systemd", "systemd-analyze")
	unit, err := os.ReadFile(filepath.Join(filepath.Dir(agentPath), "sluice.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ExecStart=/usr/local/bin/sluice serve --config ", "ExecReload=/bin/kill -HUP $MAINPID",
		"KillSignal=SIGTERM", "TimeoutStopSec=", "RestartPreventExitStatus=2", "--check-config"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("sluice.service lacks %q", want)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/sluice", sluiceBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	analyze, _ := lookTool("systemd-analyze")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyze, "verify", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=warning")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "sluice.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
