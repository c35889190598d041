package lab

import (
	"bytes"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process a test runs (bin/sluice serve, bin/sluice
// broker), killed with the test binary and at the end of the test, its
// standard error kept for the test log.
type Process struct {
	// Stderr collects the process's standard error across restarts.
	Stderr *SyncBuffer

	tb    testing.TB
	what  string
	args  []string
	ready func() bool
	cmd   *exec.Cmd
	done  chan struct{}
	// exitErr is cmd.Wait's result, set before done closes.
	exitErr error
}

// StartProcess runs args (the program first) and waits up to 30 s until
// ready reports true, failing tb if the process exits first. At the end of
// the test the process is killed and, if the test failed, the end of its
// standard error logged.
func StartProcess(tb testing.TB, what string, ready func() bool, args ...string) *Process {
	tb.Helper()
	p := &Process{Stderr: &SyncBuffer{}, tb: tb, what: what, args: args, ready: ready}
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("%s stderr (last 8 KiB):\n%s", what, p.Stderr.Tail(8<<10))
		}
	})
	p.Start()
	return p
}

// Start runs the process again after Kill or an exit, and waits until it
// is ready.
func (p *Process) Start() {
	p.tb.Helper()
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stderr = p.Stderr
	cmd.SysProcAttr = DieWithParent(&syscall.SysProcAttr{}, syscall.SIGKILL)
	if err := Spawn(cmd); err != nil {
		p.tb.Fatalf("start %s: %v", p.what, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() { p.exitErr = cmd.Wait(); close(done) }()
	WaitFor(p.tb, p.what+" to be ready", 30*time.Second, func() bool {
		select {
		case <-done:
			p.tb.Fatalf("%s exited at start: %v\n%s", p.what, p.exitErr, p.Stderr.Tail(4<<10))
		default:
		}
		return p.ready()
	})
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Process) Kill() {
	if p.cmd == nil || !p.Alive() {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Alive reports whether the process still runs.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Wait waits up to timeout for the process to exit by itself and returns
// how it ended (nil: exit status 0); it fails the test on the timeout.
func (p *Process) Wait(timeout time.Duration) error {
	p.tb.Helper()
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(timeout):
		p.tb.Fatalf("%s did not exit within %v", p.what, timeout)
		return nil
	}
}

// Pid is the process id of the current run.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// SyncBuffer is a bytes.Buffer a child process writes while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail is the last n bytes written.
func (s *SyncBuffer) Tail(n int) string {
	str := s.String()
	if len(str) > n {
		return str[len(str)-n:]
	}
	return str
}

// Spawn starts cmd from one goroutine locked to a thread that never exits:
// Pdeathsig fires when the thread that forked the child exits, so this way
// children die with the test binary (a panic, a -timeout) and only then.
func Spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawnCh {
				r.res <- r.cmd.Start()
			}
		}()
	})
	res := make(chan error, 1)
	spawnCh <- spawnReq{cmd, res}
	return <-res
}

type spawnReq struct {
	cmd *exec.Cmd
	res chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)
