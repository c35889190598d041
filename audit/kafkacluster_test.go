package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/internal/testenv/testpki"
)

// kfake's cluster stands in for Apache Kafka here: no package registry of
// this machine ships Kafka itself.

const (
	clusterUser     = "sluice"
	clusterPassword = "s3cret-Pa55word"
)

// kafkaCluster is a three-broker kfake cluster with TLS (certificates from
// testpki in pki) and SCRAM-SHA-512.
func kafkaCluster(t *testing.T, pki string, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	srv, err := testpki.ServerTLS(pki)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3), kfake.TLS(srv), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", clusterUser, clusterPassword), kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(3)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func writePKI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := testpki.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// security is genlog's settings for the cluster, with the password in a file.
func security(t *testing.T, pki, ca, password string) audit.Security {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "kafka.pw")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return audit.Security{TLS: audit.ClientTLS{CA: filepath.Join(pki, ca)},
		SASL: audit.ClientSASL{Mechanism: "SCRAM-SHA-512", User: clusterUser, PasswordFile: pw}}
}

// The producer to a three-broker cluster over TLS and SCRAM stores every
// record once, in order per key, while partition leaders move and a broker
// goes away under load; verify passes.
func TestKafkaClusterExactlyOnceThroughLeaderMoves(t *testing.T) {
	pki := writePKI(t)
	const topic = "cluster.audit"
	c := kafkaCluster(t, pki, kfake.SeedTopics(3, topic))
	brokers := c.ListenAddrs()
	k, err := audit.NewKafka(brokers, security(t, pki, "ca.pem", clusterPassword))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lab.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	p, err := audit.NewProducer(audit.ProducerConfig{Kafka: k, Compression: "zstd", Name: "cluster", Chain: true, ChainOwner: "s1",
		SpillFile: filepath.Join(t.TempDir(), "spill"), QueueSize: 100000}, log)
	if err != nil {
		t.Fatal(err)
	}
	const sessions = 20
	var sent int
	stop := time.Now().Add(4 * time.Second)
	live := map[int32]bool{0: true, 1: true, 2: true}
	removed := int32(-1)
	for i := 0; time.Now().Before(stop); i++ {
		for s := range sessions {
			p.Send(audit.Record{Topic: topic, Key: []byte("session-" + strconv.Itoa(s)),
				Value: fmt.Appendf(nil, `{"proxy":"s1","session":%d,"seq":%d}`, s, i)})
			sent++
		}
		switch {
		case i%50 == 25:
			// Leaders move: every partition to another live broker.
			for part := int32(0); part < 3; part++ {
				node := c.LeaderFor(topic, part)
				for node = (node + 1) % 3; !live[node]; node = (node + 1) % 3 {
				}
				if err := c.MoveTopicPartition(topic, part, node); err != nil {
					t.Errorf("move partition %d to %d: %v", part, node, err)
				}
			}
		case i == 200:
			// The leader of partition 0 goes away mid-stream. (Not to come
			// back: kfake's RemoveNode closes the listener but its broker
			// still answers the connections it has, NOT_LEADER forever, which
			// a restarted Kafka broker would not. Restarts are the bundled
			// broker's test: TestLostAcknowledgementDeliversOnce.)
			removed = c.LeaderFor(topic, 0)
			if err := c.RemoveNode(removed); err != nil {
				t.Fatal(err)
			}
			live[removed] = false
		}
		time.Sleep(2 * time.Millisecond)
	}
	if removed < 0 {
		t.Fatal("the load ended before a broker was removed")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Every record once, in per-session order, read by kafka-go.
	got := lab.ReadTopic(t, lab.SecureDialer(t, filepath.Join(pki, "ca.pem"), clusterUser, clusterPassword), c.ListenAddrs(), topic)
	seen := map[[2]int]int{}
	last := map[int]int{}
	total := 0
	for part, values := range got {
		for _, v := range values {
			var r struct{ Session, Seq int }
			if err := json.Unmarshal(v, &r); err != nil {
				t.Fatalf("partition %d: %s: %v", part, v, err)
			}
			seen[[2]int{r.Session, r.Seq}]++
			if l, ok := last[r.Session]; ok && r.Seq != l+1 {
				t.Errorf("session %d: seq %d after %d", r.Session, r.Seq, l)
			}
			last[r.Session] = r.Seq
			total++
		}
	}
	for key, n := range seen {
		if n != 1 {
			t.Errorf("session %d seq %d stored %d times", key[0], key[1], n)
		}
	}
	if total != sent {
		t.Errorf("%d records stored, %d sent", total, sent)
	}
	reps, err := audit.Verify(context.Background(), k, topic)
	if err != nil {
		t.Fatal(err)
	}
	verified := 0
	for _, r := range reps {
		verified += r.Verified
		if len(r.Problems) > 0 || r.Duplicates > 0 {
			t.Errorf("partition %d: %+v", r.Partition, r)
		}
	}
	if verified != sent {
		t.Errorf("verify: %d records verified, %d sent", verified, sent)
	}
	if t.Failed() {
		t.Logf("the producer's log:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), clusterPassword) {
		t.Error("the password is in the log")
	}
	t.Logf("%d records in %d sessions, exactly once", sent, sessions)
}

// A wrong password or a CA that did not sign the brokers' certificates is
// an error naming the broker and the setting to fix, never the password.
func TestKafkaClusterSecurityErrors(t *testing.T) {
	pki := writePKI(t)
	c := kafkaCluster(t, pki, kfake.SeedTopics(3, "sec.audit"))
	brokers := c.ListenAddrs()
	const wrong = "not-the-Pa55word"
	for _, tc := range []struct {
		name, ca, password string
		want               []string
	}{
		{"wrong password", "ca.pem", wrong, []string{"SASL", "genlog.sasl.password_file", clusterUser}},
		{"untrusted CA", "other-ca.pem", clusterPassword, []string{"genlog.tls.ca", "certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := audit.NewKafka(brokers, security(t, pki, tc.ca, tc.password))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = audit.Read(ctx, audit.ReadOptions{Kafka: k, Topic: "sec.audit"}, func([]byte) {})
			if err == nil {
				t.Fatal("read succeeded")
			}
			msg := err.Error()
			named := false
			for _, b := range brokers {
				named = named || strings.Contains(msg, b)
			}
			if !named {
				t.Errorf("error %q names no broker of %v", msg, brokers)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			// The producer logs its failure, without the password.
			logs := &lab.SyncBuffer{}
			p, err := audit.NewProducer(audit.ProducerConfig{Kafka: k, Name: "sec", Chain: true, ChainOwner: "s1",
				SpillFile: filepath.Join(t.TempDir(), "spill")}, slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			p.Send(audit.Record{Topic: "sec.audit", Key: []byte("k"), Value: []byte(`{"proxy":"s1"}`)})
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(logs.String(), "spilling") && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			p.Close()
			out := logs.String()
			if !strings.Contains(out, tc.want[0]) {
				t.Errorf("the producer's log does not say %q:\n%s", tc.want[0], out)
			}
			for _, secret := range []string{wrong, clusterPassword} {
				if strings.Contains(out, secret) || strings.Contains(msg, secret) {
					t.Errorf("a password is in the log or the error")
				}
			}
			t.Logf("error: %s", msg)
		})
	}
}
