package audit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// kafkaWriter writes records to a Kafka cluster with kafka-go's Writer:
// the one place a Record becomes a kafka.Message.
type kafkaWriter struct {
	w *kafka.Writer
	// offsets, for chained records, are where the writer's completions
	// said each was stored, by chain value, until WriteRecords reads them.
	mu      sync.Mutex
	offsets map[[32]byte]int64
}

func newKafkaWriter(cfg ProducerConfig) *kafkaWriter {
	kw := &kafka.Writer{
		Addr:     kafka.TCP(cfg.Brokers...),
		Balancer: &kafka.Hash{},
		// WriteMessages waits for partial batches up to BatchTimeout:
		// keep it short and let batches grow while a call is in flight.
		BatchTimeout:           20 * time.Millisecond,
		BatchSize:              10000,
		BatchBytes:             16 << 20,
		RequiredAcks:           kafka.RequireAll,
		AllowAutoTopicCreation: true,
		// Fail fast when the broker is away: the spill file waits instead.
		MaxAttempts:     3,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: 200 * time.Millisecond,
	}
	k := &kafkaWriter{w: kw}
	if cfg.Chain {
		k.offsets = map[[32]byte]int64{}
		kw.Completion = func(msgs []kafka.Message, err error) {
			if err != nil {
				return
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			for _, m := range msgs {
				if c, ok := chainValue(m.Value); ok {
					k.offsets[c] = m.Offset
				}
			}
		}
		kw.Balancer = chosenPartition{}
		if cfg.SpillFile != "" {
			// The producer retries from the spill file, after asking the
			// broker what a failed write stored; a retry inside the writer
			// could store a batch twice.
			kw.MaxAttempts = 1
		}
	}
	return k
}

// WriteRecords writes recs. The messages are made anew for each write:
// kafka-go may still hold a batch after a timeout.
func (k *kafkaWriter) WriteRecords(ctx context.Context, recs []Record) error {
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{Topic: r.Topic, Key: r.Key, Value: r.Value, Partition: r.Partition}
	}
	err := k.w.WriteMessages(ctx, msgs...)
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := range recs {
		recs[i].Offset = -1
		if c, ok := chainValue(recs[i].Value); ok && k.offsets != nil {
			if off, ok := k.offsets[c]; ok {
				recs[i].Offset = off
				delete(k.offsets, c)
			}
		}
	}
	if len(k.offsets) > 4*maxBatch {
		clear(k.offsets) // of writes that failed in part
	}
	return firstError(err)
}

func (k *kafkaWriter) Close() error { return k.w.Close() }

func (k *kafkaWriter) CreateTopics(ctx context.Context, topics []string) error {
	req := &kafka.CreateTopicsRequest{Addr: k.w.Addr}
	for _, t := range topics {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: t, NumPartitions: -1, ReplicationFactor: -1})
	}
	resp, err := (&kafka.Client{}).CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for _, t := range topics {
		if err := resp.Errors[t]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	return nil
}

// firstError shortens kafka-go's per-message error lists to their first.
func firstError(err error) error {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil {
				return fmt.Errorf("%d of %d records failed: %w", we.Count(), len(we), e)
			}
		}
	}
	return err
}

// chosenPartition routes a message to the partition whose chain sealed it.
type chosenPartition struct{}

func (chosenPartition) Balance(msg kafka.Message, partitions ...int) int {
	for _, p := range partitions {
		if p == msg.Partition {
			return p
		}
	}
	return partitions[partitionOf(msg.Key, len(partitions))%len(partitions)]
}

// topicPartitions asks the first of brokers for topic's partitions and
// their leaders.
func topicPartitions(ctx context.Context, brokers []string, topic string) ([]kafka.Partition, error) {
	if len(brokers) == 0 {
		return nil, errors.New("no brokers: pass --brokers host:port")
	}
	conn, err := kafka.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", brokers[0], err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, err)
	}
	return parts, nil
}

// dialLeader connects to the leader of a partition of topic, to read it.
func dialLeader(ctx context.Context, topic string, p kafka.Partition) (*kafka.Conn, error) {
	lc, err := kafka.DialLeader(ctx, "tcp", net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port)), topic, p.ID)
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", p.ID, err)
	}
	return lc, nil
}
