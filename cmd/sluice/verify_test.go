package main_test

import (
	"bytes"
	"context"
	"database/sql"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func runVerify(t *testing.T, broker, topic string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "audit", "verify", "--brokers", broker, "--topic", topic).CombinedOutput()
	return string(out), err
}

// TestAuditVerifyDetectsTampering proves the trail's hash chain: verify
// passes on what Sluice wrote, and fails on a copy with one record altered
// and another removed.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	in := startInstance(t, "genlog:\n  enabled: true\n  topic: chain.test\n")
	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := db.Exec("SELECT ?", i); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	recs := readTopic(t, in.broker, "chain.test", func(rs []record) bool { return len(rs) >= 80 })
	if out, err := runVerify(t, in.broker, "chain.test"); err != nil || !strings.Contains(out, "ok: every record chains") {
		t.Fatalf("verify of an intact trail: %v\n%s", err, out)
	}
	_ = recs

	// Copy the trail partition by partition, altering one record and
	// leaving out another.
	var msgs []kafka.Message
	conn, err := kafka.Dial("tcp", in.broker)
	if err != nil {
		t.Fatal(err)
	}
	parts, _ := conn.ReadPartitions("chain.test")
	conn.Close()
	altered, removed := false, false
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{in.broker}, Topic: "chain.test", Partition: p.ID, MaxWait: 100 * time.Millisecond})
		n := 0
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			m, err := r.ReadMessage(ctx)
			cancel()
			if err != nil {
				break
			}
			n++
			switch {
			case n == 5 && !altered && bytes.Contains(m.Value, []byte(`"user":"app"`)):
				m.Value = bytes.Replace(m.Value, []byte(`"user":"app"`), []byte(`"user":"eve"`), 1)
				altered = true
			case n == 9 && !removed:
				removed = true
				continue
			}
			msgs = append(msgs, kafka.Message{Partition: p.ID, Key: m.Key, Value: m.Value})
		}
		r.Close()
	}
	if !altered || !removed {
		t.Fatalf("trail too short to tamper with: altered %v removed %v", altered, removed)
	}
	w := &kafka.Writer{Addr: kafka.TCP(in.broker), Topic: "chain.copy", AllowAutoTopicCreation: true, RequiredAcks: kafka.RequireAll,
		Balancer: kafka.BalancerFunc(func(m kafka.Message, ps ...int) int { return m.Partition })}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	out, err := runVerify(t, in.broker, "chain.copy")
	if err == nil || strings.Count(out, "chain broken") != 2 {
		t.Fatalf("verify of a tampered copy should report 2 broken chains and fail: %v\n%s", err, out)
	}
}
