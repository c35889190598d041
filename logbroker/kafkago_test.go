package logbroker

import (
	"context"
	"fmt"
	"testing"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

func TestKafkaGoWriterReader(t *testing.T) {
	tb := startBroker(t, Config{}, "")
	const topic, n = "audit.kafkago", 300
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	w := &kafka.Writer{
		Addr:                   kafka.TCP(tb.addr),
		Topic:                  topic,
		RequiredAcks:           kafka.RequireAll,
		AllowAutoTopicCreation: true,
		BatchTimeout:           5 * time.Millisecond,
		Balancer:               &kafka.Hash{},
	}
	defer w.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("key-%d", i%7)), Value: []byte(fmt.Sprintf("value-%d", i))}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("WriteMessages: %v", err)
	}

	// Reader without a group: one partition at a time, explicit offsets.
	var perPartition [DefaultPartitions][]string
	total := 0
	for p := 0; p < DefaultPartitions; p++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{tb.addr}, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		hw := tb.partition(topic, int32(p)).stats().HighWatermark
		for int64(len(perPartition[p])) < hw {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("partition %d: ReadMessage: %v", p, err)
			}
			if m.Offset != int64(len(perPartition[p])) {
				t.Fatalf("partition %d: offset %d, want %d", p, m.Offset, len(perPartition[p]))
			}
			perPartition[p] = append(perPartition[p], string(m.Value))
		}
		r.Close()
		total += len(perPartition[p])
	}
	if total != n {
		t.Fatalf("read %d messages, want %d", total, n)
	}
	// Keys hash to fixed partitions, so each partition's values must be in
	// write order.
	pos := make(map[string]int)
	for i, m := range msgs {
		pos[string(m.Value)] = i
	}
	for p, vals := range perPartition {
		for i := 1; i < len(vals); i++ {
			if pos[vals[i]] <= pos[vals[i-1]] {
				t.Fatalf("partition %d: %s after %s", p, vals[i], vals[i-1])
			}
		}
	}

	// Admin-style calls through a plain connection.
	conn, err := kafka.DialContext(ctx, "tcp", tb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil || len(parts) != DefaultPartitions || parts[0].Leader.Port == 0 {
		t.Fatalf("ReadPartitions: %v %+v", err, parts)
	}
	err = conn.CreateTopics(kafka.TopicConfig{Topic: "audit.kafkago.created", NumPartitions: 2, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "3600000"}}})
	if err != nil {
		t.Fatalf("CreateTopics: %v", err)
	}
	if p := tb.partition("audit.kafkago.created", 1); p == nil || p.topic.settings().retention != time.Hour {
		t.Fatal("created topic missing or its retention.ms not applied")
	}

	// Reader with a group: consumes everything once, commits.
	gr := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{tb.addr},
		Topic:             topic,
		GroupID:           "kafkago-group",
		MaxWait:           100 * time.Millisecond,
		StartOffset:       kafka.FirstOffset,
		HeartbeatInterval: 200 * time.Millisecond,
		CommitInterval:    50 * time.Millisecond,
	})
	defer gr.Close()
	seen := make(map[string]bool)
	for len(seen) < n {
		m, err := gr.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("group ReadMessage after %d: %v", len(seen), err)
		}
		if seen[string(m.Value)] {
			t.Fatalf("group delivered %s twice", m.Value)
		}
		seen[string(m.Value)] = true
	}
}
