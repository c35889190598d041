package main_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// threadSlices reads each thread's scheduler slice (se.slice, in ns) from
// /proc; ok is false when the kernel does not show one.
func threadSlices(t *testing.T, pid int) (slices map[int]int64, ok bool) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices = map[int]int64{}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		data, err := os.ReadFile(filepath.Join(dir, task.Name(), "sched"))
		if err != nil {
			continue // the thread has exited
		}
		for _, line := range strings.Split(string(data), "\n") {
			name, value, found := strings.Cut(line, ":")
			if found && strings.TrimSpace(name) == "se.slice" {
				n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
				if err != nil {
					t.Fatalf("thread %d: se.slice %q", tid, value)
				}
				slices[tid] = n
			}
		}
	}
	return slices, len(slices) > 0
}

// TestSchedSlice: every thread of a running Sluice, those started under
// load too, has the default 100µs scheduler slice; a reload to another
// value moves them all, and sched_slice: 0s gives them back the kernel's.
func TestSchedSlice(t *testing.T) {
	in := startInstance(t, "")
	slices, ok := threadSlices(t, in.Pid())
	if !ok {
		t.Skip("this kernel shows no per-task scheduler slice (se.slice, Linux 6.12 and later)")
	}
	kernelDefault := int64(0)
	if data, err := os.ReadFile("/sys/kernel/debug/sched/base_slice_ns"); err == nil {
		kernelDefault, _ = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	}
	if strings.Contains(in.Stderr.String(), "sched_slice has no effect") {
		t.Skip("this kernel ignores per-task slices")
	}

	// Load with many sessions makes the runtime start threads.
	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(32)
	done := make(chan error, 32)
	for range 32 {
		go func() {
			var err error
			for i := 0; i < 50 && err == nil; i++ {
				_, err = db.Exec("SELECT SLEEP(0.001)")
			}
			done <- err
		}()
	}
	for range 32 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}

	want := func(slice int64, what string) {
		t.Helper()
		lab.WaitFor(t, what, 10*time.Second, func() bool {
			slices, _ = threadSlices(t, in.Pid())
			for _, s := range slices {
				if s != slice {
					return false
				}
			}
			return len(slices) > 0
		})
	}
	want(100_000, "every thread to have a 100µs slice")
	if len(slices) < 3 {
		t.Fatalf("only %d threads to check", len(slices))
	}

	good, _ := os.ReadFile(in.config)
	reload := func(extra string) {
		t.Helper()
		before := strings.Count(in.Stderr.String(), "config reloaded")
		os.WriteFile(in.config, append(append([]byte{}, good...), extra...), 0o600)
		in.Signal(syscall.SIGHUP)
		lab.WaitFor(t, "the reload", 10*time.Second, func() bool {
			return strings.Count(in.Stderr.String(), "config reloaded") > before
		})
	}
	reload("sched_slice: 2ms\n")
	want(2_000_000, "every thread to have a 2ms slice after a reload")
	reload("sched_slice: 0s\n")
	slices, _ = threadSlices(t, in.Pid())
	for tid, s := range slices {
		if s == 2_000_000 || s == 100_000 || (kernelDefault > 0 && s != kernelDefault) {
			t.Fatalf("thread %d keeps a %dns slice after sched_slice: 0s (kernel default %d)", tid, s, kernelDefault)
		}
	}
}
