package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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
	"github.com/segmentio/kafka-go/sasl/scram"
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

// WaitTopology waits until Sluice's monitor reports a primary and the given
// number of usable replicas (GET /v1/servers), so no run starts while reads
// still go to the primary for want of known replicas.
func WaitTopology(tb testing.TB, admin string, replicas int) {
	tb.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	WaitFor(tb, "sluice to see the primary and replicas", 30*time.Second, func() bool {
		resp, err := client.Get("http://" + admin + "/v1/servers")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var servers []struct {
			Role    string
			Up      bool
			Broken  bool
			Lagging bool
		}
		if err := json.NewDecoder(resp.Body).Decode(&servers); err != nil {
			return false
		}
		var p, r int
		for _, s := range servers {
			switch {
			case !s.Up:
			case s.Role == "primary":
				p++
			case s.Role == "replica" && !s.Broken && !s.Lagging:
				r++
			}
		}
		return p == 1 && r == replicas
	})
}

// Metrics scrapes the Sluice admin API's /metrics at admin: every sample by
// its full name with labels.
func Metrics(admin string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// MetricSum is the sum of every sample of name in m, whatever its labels.
func MetricSum(m map[string]float64, name string) float64 {
	var sum float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
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

// ReadTopic reads every record of topic with kafka-go (a client
// independent of Sluice's) through d from the first of brokers that
// answers, by partition in offset order.
func ReadTopic(t testing.TB, d *kafka.Dialer, brokers []string, topic string) map[int][][]byte {
	t.Helper()
	var conn *kafka.Conn
	var err error
	for _, b := range brokers {
		if conn, err = d.Dial("tcp", b); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][][]byte{}
	for _, p := range parts {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		lc, err := d.DialLeader(ctx, "tcp", net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port)), topic, p.ID)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := lc.ReadOffsets()
		if err != nil {
			t.Fatal(err)
		}
		lc.Seek(first, kafka.SeekAbsolute)
		for off := first; off < last; {
			lc.SetReadDeadline(time.Now().Add(10 * time.Second))
			batch := lc.ReadBatch(1, 16<<20)
			began := off
			for {
				m, err := batch.ReadMessage()
				if err != nil {
					break
				}
				off = m.Offset + 1
				out[p.ID] = append(out[p.ID], m.Value)
			}
			if err := batch.Close(); err != nil && off < last || off == began {
				t.Fatalf("partition %d at %d: %v", p.ID, off, err)
			}
		}
		lc.Close()
	}
	return out
}

// SecureDialer is kafka-go's dialer for brokers with TLS, whose
// certificates caFile's CA signs, and SCRAM-SHA-512 as user.
func SecureDialer(tb testing.TB, caFile, user, password string) *kafka.Dialer {
	tb.Helper()
	mech, err := scram.Mechanism(scram.SHA512, user, password)
	if err != nil {
		tb.Fatal(err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &kafka.Dialer{Timeout: 10 * time.Second, TLS: &tls.Config{RootCAs: pool}, SASLMechanism: mech}
}

// PoolYAML is the pool: section of a test's Sluice config: pool.mode as
// SLUICE_TEST_POOL says (make test runs the router, replay, prepared
// statement and failover tests again with multiplex), else nothing.
func PoolYAML() string {
	if mode := os.Getenv("SLUICE_TEST_POOL"); mode != "" {
		return "pool: {mode: " + mode + "}\n"
	}
	return ""
}
