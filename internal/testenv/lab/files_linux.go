package lab

import (
	"syscall"
	"testing"
)

// NeedFiles lets this process, and the processes it starts from now on
// (Sluice, sysbench, HAProxy), open n files each, failing tb when the hard
// limit is lower. Go raises its own soft limit to the hard one at start
// but gives children the limit it found, unless the program sets the limit
// itself: so it is set here even when already high enough.
func NeedFiles(tb testing.TB, n uint64) {
	tb.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Max < n {
		tb.Fatalf("needs %d open files per process; the hard limit is %d (ulimit -Hn)", n, lim.Max)
	}
	lim.Cur = max(lim.Cur, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
}
