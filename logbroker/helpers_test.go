package logbroker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

// testBroker is a broker serving on a loopback port for one test.
type testBroker struct {
	*Broker
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("LOGBROKER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", p)
	return len(p), nil
}

// startBroker opens a broker on dir and serves it on 127.0.0.1:0 (or on
// addr when given) until the test ends.
func startBroker(t testing.TB, cfg Config, listenAddr string) *testBroker {
	t.Helper()
	return startBrokerLog(t, cfg, listenAddr, testLogger(t))
}

// startBrokerLog is startBroker logging to log.
func startBrokerLog(t testing.TB, cfg Config, listenAddr string, log *slog.Logger) *testBroker {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	b, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if listenAddr == "" {
		listenAddr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		b.Close()
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb := &testBroker{Broker: b, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { tb.done <- b.Serve(ctx, ln) }()
	t.Cleanup(func() { tb.stop(t) })
	return tb
}

// stop ends serving and closes the broker; safe to call twice.
func (tb *testBroker) stop(t testing.TB) {
	t.Helper()
	if tb.cancel == nil {
		return
	}
	tb.cancel()
	tb.cancel = nil
	select {
	case err := <-tb.done:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Serve did not return within 10s of cancel")
	}
	if err := tb.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func boolPtr(v bool) *bool { return &v }
