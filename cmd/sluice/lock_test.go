package main_test

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// TestSecondProcessOnSameData starts a second `sluice serve` and a
// `sluice broker` on the data_dir of a running Sluice, and a Sluice with
// only the first one's spill file in common: each exits with the lock
// error naming the first one's pid, and the first one's trail still
// verifies, record for record.
func TestSecondProcessOnSameData(t *testing.T) {
	in := startInstance(t, "genlog:\n  enabled: true\n  topic: lock.test\n  on_full: spill\n")
	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := db.Exec("SELECT ?", i); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	before := len(readTopic(t, in.broker, "lock.test", func(rs []record) bool { return len(rs) >= 60 }))
	if out, err := runVerify(t, in.broker, "lock.test"); err != nil || !strings.Contains(out, "ok: every record chains") {
		t.Fatalf("verify before: %v\n%s", err, out)
	}

	cfg, err := os.ReadFile(in.config)
	if err != nil {
		t.Fatal(err)
	}
	// Same data_dir (and spill file beside it), other addresses.
	second := strings.NewReplacer(in.listen, lab.FreeAddr(t), in.admin, lab.FreeAddr(t), in.broker, lab.FreeAddr(t)).Replace(string(cfg))
	secondPath := filepath.Join(t.TempDir(), "second.yaml")
	if err := os.WriteFile(secondPath, []byte(second), 0o600); err != nil {
		t.Fatal(err)
	}
	// Only the spill file in common: no bundled broker, Genlog to the
	// first one's broker.
	spillFile := filepath.Join(filepath.Dir(in.config), "genlog.spill")
	spillOnly := strings.Replace(second, "broker:\n  enabled: true", "broker:\n  enabled: false", 1)
	spillOnly = strings.Replace(spillOnly, "genlog:\n  enabled: true\n", "genlog:\n  enabled: true\n  brokers: ["+in.broker+"]\n  spill_file: "+spillFile+"\n", 1)
	spillPath := filepath.Join(t.TempDir(), "spill.yaml")
	if err := os.WriteFile(spillPath, []byte(spillOnly), 0o600); err != nil {
		t.Fatal(err)
	}

	pid := "pid " + strconv.Itoa(in.Pid())
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"sluice serve", []string{"serve", "--config", secondPath}, "broker.data_dir"},
		{"sluice broker", []string{"broker", "--config", secondPath}, "broker.data_dir"},
		{"sluice serve sharing the spill file", []string{"serve", "--config", spillPath}, "genlog.spill_file"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, binary, tc.args...).CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut {
			t.Fatalf("%s on the first one's data: %v (want a prompt failure)\n%s", tc.name, err, out)
		}
		if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "in use by "+pid) {
			t.Fatalf("%s: the error does not name %s and the holder's %s:\n%s", tc.name, tc.want, pid, out)
		}
	}

	if !in.healthy() {
		t.Fatal("the first Sluice is no longer healthy")
	}
	if n := len(readTopic(t, in.broker, "lock.test", func(rs []record) bool { return len(rs) >= before })); n != before {
		t.Fatalf("the trail holds %d records, had %d", n, before)
	}
	if out, err := runVerify(t, in.broker, "lock.test"); err != nil || !strings.Contains(out, "ok: every record chains") {
		t.Fatalf("verify after: %v\n%s", err, out)
	}
}
