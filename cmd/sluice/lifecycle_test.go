package main_test

import (
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// flapper forwards TCP connections to a server while up; going down, it
// closes every connection it forwarded, and while down it closes the ones
// it accepts: a monitor polling it sees the server come and go. Stalled,
// it holds what clients send on the connections it forwards, unanswered.
type flapper struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	up      bool
	stalled bool
	conns   map[net.Conn]bool
	// held is closed once a request is held while stalled; release at the
	// end of the test.
	held, release chan struct{}
	holdOnce      sync.Once
}

func startFlapper(t *testing.T, target string) *flapper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flapper{ln: ln, target: target, up: true, conns: map[net.Conn]bool{},
		held: make(chan struct{}), release: make(chan struct{})}
	go f.accept()
	t.Cleanup(func() {
		ln.Close()
		close(f.release)
		f.set(false)
	})
	return f
}

func (f *flapper) addr() string { return f.ln.Addr().String() }

func (f *flapper) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if !f.up || f.stalled {
			f.mu.Unlock()
			c.Close()
			continue
		}
		b, err := net.DialTimeout("tcp", f.target, time.Second)
		if err != nil {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.conns[c], f.conns[b] = true, true
		f.mu.Unlock()
		go f.pipe(b, c, true)
		go f.pipe(c, b, false)
	}
}

func (f *flapper) pipe(dst, src net.Conn, fromClient bool) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			stalled := f.stalled
			f.mu.Unlock()
			if fromClient && stalled {
				f.holdOnce.Do(func() { close(f.held) })
				<-f.release
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *flapper) set(up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up = up
	if !up {
		for c := range f.conns {
			c.Close()
		}
		clear(f.conns)
	}
}

// stall holds every request from now on: a poll over a connection the
// monitor keeps waits for its deadline (monitor.timeout), then sees the
// server down.
func (f *flapper) stall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stalled = true
}

// toggle flips the server up and down every period until the returned
// stop is called.
func (f *flapper) toggle(period time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(period)
		defer t.Stop()
		for up := false; ; up = !up {
			select {
			case <-done:
				return
			case <-t.C:
				f.set(up)
			}
		}
	}()
	return sync.OnceFunc(func() { close(done); <-finished })
}

var stateChangeLog = regexp.MustCompile(`msg="server state changed" .*?server=flap from=(\S+) to=(\S+)`)

// flapChanges are the flap server's state changes Sluice logged, as
// "from>to".
func flapChanges(stderr string) []string {
	var out []string
	for _, m := range stateChangeLog.FindAllStringSubmatch(stderr, -1) {
		out = append(out, m[1]+">"+m[2])
	}
	return out
}

// SIGTERM while the monitor emits topology events stops Sluice cleanly. A
// server comes and goes every 50ms, polled every 20ms, so the monitor
// emits events continuously; then it stops answering, and Sluice gets
// SIGTERM while a poll waits on it: that poll ends after the signal, at
// monitor.timeout, with one more event. The monitor is joined before the
// events producer closes, so that late event is not sent on a closed
// queue (which panicked), and every event the monitor emitted, the late
// one too, reaches sluice.events before the bundled broker stops.
func TestStopWhileMonitorEmitsEvents(t *testing.T) {
	flap := startFlapper(t, topo.Replicas[0].Addr())
	dir := t.TempDir()
	in := &instance{config: dir + "/sluice.yaml", listen: lab.FreeAddr(t), admin: lab.FreeAddr(t), broker: lab.FreeAddr(t)}
	writeConfig(t, in.config, in.listen, in.admin, in.broker, "")
	data, err := os.ReadFile(in.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "interval: 200ms", "interval: 20ms\n  timeout: 1s", 1)
	cfg = strings.Replace(cfg, "service_user:", "  - name: flap\n    address: "+flap.addr()+"\nservice_user:", 1)
	if err := os.WriteFile(in.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	in.Process = lab.StartProcess(t, "sluice", in.healthy, binary, "serve", "--config", in.config)

	stopFlapping := flap.toggle(50 * time.Millisecond)
	defer stopFlapping()
	lab.WaitFor(t, "the monitor to log 10 state changes of the flapping server", 30*time.Second, func() bool {
		return len(flapChanges(in.Stderr.String())) >= 10
	})
	stopFlapping()
	flap.set(true)
	lab.WaitFor(t, "the monitor to see the flapping server up", 10*time.Second, func() bool {
		changes := flapChanges(in.Stderr.String())
		return strings.HasSuffix(changes[len(changes)-1], ">replica")
	})
	flap.stall()
	select {
	case <-flap.held:
	case <-time.After(10 * time.Second):
		t.Fatal("no poll reached the stalled server")
	}
	if err := in.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := in.Wait(30 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM while the monitor emits events: %v, want status 0\n%s", err, in.Stderr.Tail(8<<10))
	}
	stderr := in.Stderr.String()
	for _, bad := range []string{"panic", "send on closed channel", "goroutine "} {
		if strings.Contains(stderr, bad) {
			t.Fatalf("stderr has %q:\n%s", bad, in.Stderr.Tail(8<<10))
		}
	}
	if !strings.Contains(stderr, "msg=stopped") {
		t.Fatalf("no \"stopped\" at the end of the stop:\n%s", in.Stderr.Tail(4<<10))
	}
	logged := flapChanges(stderr)
	if last := logged[len(logged)-1]; last != "replica>down" {
		t.Fatalf("the last state change logged is %s, want the stalled poll's replica>down", last)
	}

	// Every state change the monitor logged (and so emitted) is in
	// sluice.events, in order: read back with the broker alone on the
	// same data.
	broker := lab.StartProcess(t, "sluice broker", lab.Listening(in.broker), binary, "broker", "--config", in.config)
	defer broker.Kill()
	var stored []string
	readTopic(t, in.broker, "sluice.events", func(recs []record) bool {
		stored = stored[:0]
		for _, r := range recs {
			if r.Type == "topology" && r.Event == "state_change" && r.Server == "flap" {
				stored = append(stored, r.From+">"+r.To)
			}
		}
		return len(stored) >= len(logged)
	})
	if strings.Join(stored, " ") != strings.Join(logged, " ") {
		t.Fatalf("sluice.events holds the flapping server's state changes\n%v\nbut the monitor logged\n%v", stored, logged)
	}
}
