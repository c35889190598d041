package lab

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// SysbenchPath is where sysbench is. Without it the test is skipped, or
// fails on CI (CI=true), where it is required.
func SysbenchPath(tb testing.TB) string {
	tb.Helper()
	sb, err := exec.LookPath("sysbench")
	if err != nil {
		if onCI() {
			tb.Fatal("sysbench is required on CI")
		}
		tb.Skip("sysbench not installed (apt-get install sysbench, or make deps)")
	}
	return sb
}

// SysbenchCount is the number after label in sysbench's report of a run
// ("reconnects:", "ignored errors:", "read:"), -1 when it has no such line.
func SysbenchCount(out, label string) int {
	fields := strings.Fields(strings.TrimPrefix(GrepLine(out, label), label))
	if len(fields) == 0 {
		return -1
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		return -1
	}
	return n
}

// GrepLine is the first line of out that holds s, trimmed; "" when none.
func GrepLine(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// onCI reports whether this runs on CI (CI=true), where what a test needs
// must be installed: missing, it is a failure, never a skip.
func onCI() bool {
	ci := os.Getenv("CI")
	return strings.EqualFold(ci, "true") || ci == "1"
}
