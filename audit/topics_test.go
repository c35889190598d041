package audit_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/logbroker"
)

// topicPartitionCounts lists every topic of broker with a metadata request
// for all topics, which creates none.
func topicPartitionCounts(t *testing.T, broker string) map[string]int {
	t.Helper()
	conn, err := kafka.Dial("tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions()
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, p := range parts {
		n[p.Topic]++
	}
	return n
}

// A producer creates its topics before any record, in process or with a
// CreateTopics request, even where auto-creation is off; again is fine.
func TestProducerCreatesTopics(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	off := false
	b, ln := startBroker(t, logbroker.Config{Partitions: 3, AutoCreateTopics: &off}, log)
	addr := ln.Addr().String()
	for _, c := range []struct {
		name  string
		local *logbroker.Broker
	}{{"in-process", b}, {"kafka", nil}} {
		p, err := audit.NewProducer(audit.ProducerConfig{Brokers: []string{addr}, Name: c.name, Local: c.local}, log)
		if err != nil {
			t.Fatal(err)
		}
		topic := "created." + c.name
		for range 2 {
			if err := p.CreateTopics(context.Background(), topic, "sluice.events"); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		p.Close()
		if got := topicPartitionCounts(t, addr); got[topic] != 3 || got["sluice.events"] != 3 {
			t.Fatalf("%s: topics %v", c.name, got)
		}
	}
}
