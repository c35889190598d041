package faulttest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// vmRSS is a process's resident memory in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// A client that asks for a large result and stops reading does not make
// Sluice buffer it: the result waits in the server and the socket buffers,
// and Sluice's memory stays flat while other sessions go on.
func TestSlowClientDoesNotGrowMemory(t *testing.T) {
	s := startSluice(t, options{})
	slow := s.db("app", "apppass", "app")
	slow.SetMaxOpenConns(1)
	other := s.db("app", "apppass", "app")
	var one int
	if err := other.QueryRow("SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
	before := vmRSS(t, s.Pid())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// 400 MB of rows; the client reads the first and then nothing.
	rows, err := slow.QueryContext(ctx, "SELECT /* sluice: route=primary */ REPEAT('x', 1000000) FROM seq_1_to_400")
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("first row: %v", rows.Err())
	}
	// Let Sluice forward what the socket buffers take, then measure.
	deadline := time.Now().Add(3 * time.Second)
	peak := before
	for time.Now().Before(deadline) {
		peak = max(peak, vmRSS(t, s.Pid()))
		if err := other.QueryRow("SELECT 1").Scan(&one); err != nil {
			t.Fatalf("another session while one client stalls: %v", err)
		}
	}
	if grown := peak - before; grown > 64<<20 {
		t.Fatalf("Sluice grew by %d MiB while a client did not read a 400 MB result", grown>>20)
	}
	cancel()
	rows.Close()
	lab.WaitFor(t, "the stalled session to end", 30*time.Second, func() bool { return s.Alive() })
}
