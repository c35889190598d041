package logbroker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Partitions is the number of partitions of topic, creating the topic when
// auto-creation allows it, for producers in the same process.
func (b *Broker) Partitions(topic string) (int, error) {
	t, err := b.topic(topic, true)
	if err != nil {
		return 0, fmt.Errorf("topic %s: %w", topic, err)
	}
	if t == nil {
		return 0, fmt.Errorf("topic %s: %w", topic, kerr.UnknownTopicOrPartition)
	}
	return len(t.partitions), nil
}

// CreateTopic creates topic with the configured partition count for a
// component in the same process, whether or not auto-creation is on; a
// topic that exists already is kept as it is. It returns the topic's
// partition count.
func (b *Broker) CreateTopic(topic string) (int, error) {
	if !validTopicName(topic) {
		return 0, fmt.Errorf("topic %q: %w", topic, kerr.InvalidTopicException)
	}
	t, err := b.createTopic(topic, b.cfg.Partitions, nil)
	if err != nil && !errors.Is(err, errTopicExists) {
		return 0, fmt.Errorf("create topic %s: %w", topic, err)
	}
	return len(t.partitions), nil
}

// Append appends record batches (RecordBatch v2, as a Produce request
// carries them) to a partition of topic for a producer in the same process.
// It goes the way of a Produce request with acks=all, through the same
// appendRecords: the same checks, offsets, storage and metrics. It returns
// the base offset, and wait, which returns once the batches are as durable
// as the fsync policy makes them.
// Waiting on the last of several appends covers the earlier ones: flushes
// happen in order. The broker owns records after the call.
func (b *Broker) Append(topic string, partition int32, records []byte) (base int64, wait func(context.Context) error, err error) {
	t, err := b.topic(topic, true)
	if err != nil {
		return -1, nil, fmt.Errorf("produce to %s: %w", topic, err)
	}
	res := b.appendRecords(t, partition, records, time.Now())
	if res.code != 0 {
		return -1, nil, fmt.Errorf("produce to %s/%d: %w", topic, partition, kerr.ErrorForCode(res.code))
	}
	round := res.round
	return res.base, func(ctx context.Context) error {
		if err := round.wait(ctx); err != nil {
			return fmt.Errorf("produce to %s/%d: flush: %w", topic, partition, err)
		}
		return nil
	}, nil
}
