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

	"github.com/twmb/franz-go/pkg/kgo"
)

// confluentPython finds a python3 that can import confluent_kafka (Debian's
// python3-confluent-kafka lives under /usr/bin/python3, which need not be
// the python3 first on PATH).
func confluentPython(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, cand := range []string{"python3", "/usr/bin/python3"} {
		p, err := exec.LookPath(cand)
		if err != nil {
			continue
		}
		if exec.Command(p, "-c", "import confluent_kafka").Run() == nil {
			return p
		}
		tried = append(tried, p)
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no python3 with confluent_kafka (tried %v); install Debian's python3-confluent-kafka", tried)
	}
	t.Skipf("no python3 with confluent_kafka (tried %v)", tried)
	return ""
}

// confluentScript produces n records to a topic with confluent-kafka
// (librdkafka), then consumes them back in a consumer group, committing,
// and prints each consumed "partition offset key value" line.
const confluentScript = `
import sys, time
from confluent_kafka import Producer, Consumer, KafkaException
bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
errors = []
def report(err, msg):
    if err is not None:
        errors.append(str(err))
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
              "broker.address.family": "v4"})
for i in range(n):
    p.produce(topic, key=b"pykey-%d" % i, value=b"pyvalue-%d" % i, on_delivery=report)
if p.flush(30) != 0 or errors:
    sys.exit("produce failed: %d unflushed, errors %s" % (len(p), errors))
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-group", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "broker.address.family": "v4"})
c.subscribe([topic])
got, deadline = [], time.time() + 60
while len(got) < n and time.time() < deadline:
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        raise KafkaException(m.error())
    got.append(m)
    print(m.partition(), m.offset(), m.key().decode(), m.value().decode())
if len(got) < n:
    sys.exit("consumed %d of %d records" % (len(got), n))
c.commit(asynchronous=False)
c.close()
`

func TestConfluentKafkaInterop(t *testing.T) {
	py := confluentPython(t)
	tb := startBroker(t, Config{Partitions: 2}, "")
	const topic, n = "audit.confluent", 10
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", confluentScript, tb.addr, topic, fmt.Sprint(n))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("confluent-kafka script: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var part, off int
		var key, value string
		if _, err := fmt.Sscan(line, &part, &off, &key, &value); err != nil {
			t.Fatalf("bad script output line %q: %v", line, err)
		}
		if strings.TrimPrefix(key, "pykey-") != strings.TrimPrefix(value, "pyvalue-") {
			t.Fatalf("key %q with value %q", key, value)
		}
		seen[value] = true
	}
	if len(seen) != n {
		t.Fatalf("python consumed %d distinct records, want %d:\n%s", len(seen), n, stdout.String())
	}

	// What librdkafka produced is stored and readable by franz-go, and
	// the group's commit landed.
	var total int64
	for _, st := range tb.Stats() {
		if st.Topic == topic {
			total += st.HighWatermark
		}
	}
	if total != n {
		t.Fatalf("high watermarks of %s sum to %d, want %d", topic, total, n)
	}
	cons := newFranzClient(t, tb.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for _, r := range consumeN(t, cons, n, 30*time.Second) {
		if !seen[string(r.Value)] {
			t.Fatalf("franz-go read %q, which python did not consume", r.Value)
		}
	}
	var committed int64
	tb.groups.mu.Lock()
	if g := tb.groups.groups["py-group"]; g != nil {
		for tp, o := range g.offsets {
			if tp.Topic == topic {
				committed += o.Offset
			}
		}
	}
	tb.groups.mu.Unlock()
	if committed != n {
		t.Fatalf("py-group committed offsets sum to %d, want %d", committed, n)
	}
}
