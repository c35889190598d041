package logbroker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func kcatPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kcat not on PATH (install Debian's kcat): %v", err)
		}
		t.Skip("kcat not on PATH")
	}
	return p
}

// execKcat is kcat with args, killed when ctx ends.
func execKcat(ctx context.Context, t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	return exec.CommandContext(ctx, kcatPath(t), args...)
}

// runKcat runs kcat with args and stdin, failing the test on error.
func runKcat(t *testing.T, timeout time.Duration, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := execKcat(ctx, t, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %v: %v\nstderr:\n%s\nstdout:\n%s", args, err, stderr.String(), stdout.String())
	}
	return stdout.String()
}

func TestKcat(t *testing.T) {
	kcatPath(t)
	tb := startBroker(t, Config{Partitions: 2}, "")
	const topic = "audit.kcat"
	var in strings.Builder
	const n = 50
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "line-%d\n", i)
	}
	runKcat(t, 30*time.Second, in.String(), "-b", tb.addr, "-P", "-t", topic, "-p", "0")

	meta := runKcat(t, 30*time.Second, "", "-b", tb.addr, "-L")
	if !strings.Contains(meta, `topic "audit.kcat" with 2 partitions`) || !strings.Contains(meta, "broker 0 at "+tb.addr) {
		t.Fatalf("kcat -L output unexpected:\n%s", meta)
	}

	out := runKcat(t, 30*time.Second, "", "-b", tb.addr, "-C", "-t", topic, "-e", "-o", "beginning", "-f", "%p:%o:%s\n")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != n {
		t.Fatalf("kcat -C read %d lines, want %d:\n%s", len(lines), n, out)
	}
	for i, l := range lines {
		if want := fmt.Sprintf("0:%d:line-%d", i, i); l != want {
			t.Fatalf("line %d = %q, want %q", i, l, want)
		}
	}

	// Balanced consumer group: exits at the end of every partition (-e).
	out = runKcat(t, 60*time.Second, "", "-b", tb.addr, "-G", "kcat-group", "-o", "beginning", "-e", "-f", "%s\n", topic)
	got := strings.Fields(out)
	if len(got) != n {
		t.Fatalf("kcat -G read %d records, want %d:\n%s", len(got), n, out)
	}
}
