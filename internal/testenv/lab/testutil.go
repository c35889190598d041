package lab

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// WaitFor polls cond every 20ms until it holds, failing tb after timeout:
// the one way tests wait for a condition, never a fixed sleep.
func WaitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// FreeAddr is a free 127.0.0.1:port.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	port, err := FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// Listening is a condition for WaitFor and StartProcess: addr accepts TCP
// connections.
func Listening(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
}

// BuildSluice builds bin/sluice from this checkout into a temporary
// directory, for tests that run the real process.
func BuildSluice() (string, error) {
	_, here, _, _ := runtime.Caller(0)
	return BuildSluiceFrom(filepath.Join(filepath.Dir(here), "..", "..", ".."))
}

// BuildSluiceFrom builds bin/sluice from the source tree at root (a
// checkout of another revision, say) into a temporary directory, exactly
// as BuildSluice builds this checkout's.
func BuildSluiceFrom(root string) (string, error) {
	dir, err := os.MkdirTemp("", "sluice-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("build sluice: %v\n%s", err, out)
	}
	return bin, nil
}

// ServersYAML is the servers: entries of a Sluice config for servers. An
// entry of addr replaces that server's address (a relay in front of it).
func ServersYAML(servers []*Server, addr map[string]string) string {
	var b strings.Builder
	for _, s := range servers {
		a := s.Addr()
		if r, ok := addr[s.Name]; ok {
			a = r
		}
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n", s.Name, a)
	}
	return b.String()
}

// Healthy reports whether the Sluice admin API at admin answers GET /health
// with 200: it can serve clients.
func Healthy(admin string) bool {
	resp, err := http.Get("http://" + admin + "/health")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Topics lists every topic of a Kafka-protocol broker with its partition
// count, by a metadata request for all topics, which creates none.
func Topics(tb testing.TB, broker string) map[string]int {
	tb.Helper()
	conn, err := kafka.Dial("tcp", broker)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions()
	if err != nil {
		tb.Fatal(err)
	}
	n := map[string]int{}
	for _, p := range parts {
		n[p.Topic]++
	}
	return n
}
