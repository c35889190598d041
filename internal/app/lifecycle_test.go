package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLifecycleStopsInReverseOrder(t *testing.T) {
	var logs bytes.Buffer
	lc := &lifecycle{log: slog.New(slog.NewTextHandler(&logs, nil))}
	var stopped []string
	for _, name := range []string{"broker", "events", "monitor", "proxy", "admin"} {
		lc.start(name, func(context.Context) error {
			stopped = append(stopped, name)
			if name == "monitor" {
				return errors.New("boom")
			}
			return nil
		})
	}
	lc.stopAll(context.Background())
	if got := strings.Join(stopped, " "); got != "admin proxy monitor events broker" {
		t.Fatalf("stopped %s", got)
	}
	if !strings.Contains(logs.String(), `msg="stopping monitor" err=boom`) {
		t.Fatalf("a failed stop is not logged:\n%s", logs.String())
	}
	lc.stopAll(context.Background())
	if len(stopped) != 5 {
		t.Fatal("a second stopAll stopped again")
	}
}

// A startup step that fails half-way (the admin port is taken) stops what
// had started: the bundled broker and the client listener let go of their
// ports.
func TestServeStopsWhatStartedWhenStartupFails(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	listen, broker := freeAddr(t), freeAddr(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sluice.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listen: %s
admin_listen: %s
servers: [{name: a, address: '127.0.0.1:1'}]
service_user: {user: m}
log: {level: error}
broker:
  enabled: true
  listen: %s
  data_dir: %s
`, listen, taken.Addr(), broker, filepath.Join(dir, "broker"))), 0o600)
	err = Serve(cfg)
	if err == nil || !strings.Contains(err.Error(), "admin_listen") {
		t.Fatalf("Serve with the admin port taken: %v, want an admin_listen error", err)
	}
	for what, addr := range map[string]string{"client listener": listen, "bundled broker": broker} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("the %s still holds %s after Serve returned: %v", what, addr, err)
			continue
		}
		ln.Close()
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
