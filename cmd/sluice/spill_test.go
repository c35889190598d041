package main_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// startBroker runs `sluice broker` as its own process on addr and dir.
func startBroker(t *testing.T, addr, dir string) *exec.Cmd {
	t.Helper()
	cfg := filepath.Join(dir, "broker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("broker:\n  listen: %s\n  data_dir: %s\n", addr, filepath.Join(dir, "data"))), 0o600)
	cmd := exec.Command(binary, "broker", "--config", cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "the broker listening", 20*time.Second, func() bool {
		c, err := (&net.Dialer{Timeout: time.Second}).Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return cmd
}

// TestSpillWhileBrokerDown kills the broker (SIGKILL, mid-write) for 10 s
// under load: every query record arrives once, in order, after it returns.
// Records of the write in flight at the kill that the broker stored are
// recognised by their chain values and not sent again.
func TestSpillWhileBrokerDown(t *testing.T) {
	dir := t.TempDir()
	brokerAddr := lab.FreeAddr(t)
	broker := startBroker(t, brokerAddr, dir)
	defer func() { broker.Process.Kill(); broker.Wait() }()
	in := startInstance(t, fmt.Sprintf("genlog:\n  enabled: true\n  topic: spill.test\n  brokers: [%s]\n  on_full: spill\n  spill_file: %s\n",
		brokerAddr, filepath.Join(dir, "genlog.spill")))
	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	query := func(until time.Time) {
		for time.Now().Before(until) && n < 100000 {
			var got int
			if err := conn.QueryRowContext(context.Background(), "SELECT "+strconv.Itoa(n)).Scan(&got); err != nil || got != n {
				t.Fatalf("query %d: %v", n, err)
			}
			n++
		}
	}
	query(time.Now().Add(time.Second))
	broker.Process.Signal(syscall.SIGKILL)
	broker.Wait()
	down := n
	query(time.Now().Add(10 * time.Second))
	t.Logf("%d queries before the broker stopped, %d while it was down", down, n-down)
	broker = startBroker(t, brokerAddr, dir)
	query(time.Now().Add(time.Second))
	conn.Close()

	recs := readTopic(t, brokerAddr, "spill.test", func(rs []record) bool {
		c := 0
		for _, r := range rs {
			if r.Type == "query" && strings.HasPrefix(r.Query, "SELECT ") {
				c++
			}
		}
		return c >= n
	})
	next, dups := 0, 0
	for _, r := range recs {
		if r.Type != "query" || !strings.HasPrefix(r.Query, "SELECT ") {
			continue
		}
		i, err := strconv.Atoi(strings.TrimPrefix(r.Query, "SELECT "))
		if err != nil {
			continue
		}
		switch {
		case i == next:
			next++
		case i < next:
			dups++
		default:
			t.Fatalf("record for query %d where %d was due: records lost or out of order", i, next)
		}
	}
	if next != n {
		t.Fatalf("%d of %d query records arrived", next, n)
	}
	if dups > 0 {
		t.Fatalf("%d records arrived twice", dups)
	}
	t.Logf("all %d records arrived once, in order", n)
}
