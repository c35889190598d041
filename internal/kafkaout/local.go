package kafkaout

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"runtime"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-proxy/sluice/logbroker"
)

// messageWriter is what the producer sends batches through: kafka-go's
// Writer for a Kafka cluster, or localWriter for the bundled broker in
// this process.
type messageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
	Close() error
}

// localWriter appends to the bundled broker in this process: the same
// storage, offsets, checks and durability as a Produce request, without
// the TCP round trip and the request encoding and decoding on both sides.
type localWriter struct {
	broker *logbroker.Broker
	// chosen: messages carry the partition the producer chose (chains);
	// otherwise the key's hash picks it.
	chosen bool
	// groups is reused between writes: per topic and partition, the
	// messages in order.
	groups []messageGroup
}

type messageGroup struct {
	topic     string
	partition int
	msgs      []kafka.Message
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (w *localWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	w.groups = w.groups[:0]
	counts := map[string]int{}
	for _, m := range msgs {
		part := m.Partition
		if !w.chosen {
			n, ok := counts[m.Topic]
			if !ok {
				var err error
				if n, err = w.broker.Partitions(m.Topic); err != nil {
					return err
				}
				counts[m.Topic] = n
			}
			part = partitionOf(m.Key, n)
		}
		w.add(m, part)
	}
	now := time.Now()
	var wait func(context.Context) error
	for _, g := range w.groups {
		var err error
		if _, wait, err = w.broker.Append(g.topic, int32(g.partition), encodeBatch(g.msgs, now)); err != nil {
			return err
		}
	}
	if wait == nil {
		return nil
	}
	// One flush covers every partition appended to.
	return wait(ctx)
}

func (w *localWriter) add(m kafka.Message, part int) {
	for i := range w.groups {
		if w.groups[i].topic == m.Topic && w.groups[i].partition == part {
			w.groups[i].msgs = append(w.groups[i].msgs, m)
			return
		}
	}
	w.groups = append(w.groups, messageGroup{topic: m.Topic, partition: part, msgs: []kafka.Message{m}})
}

func (w *localWriter) Close() error { return nil }

// batchHeaderLen is the size of a RecordBatch v2 header; the records follow.
const batchHeaderLen = 61

// encodeBatch builds one uncompressed RecordBatch v2 of msgs, timestamped
// now, with no producer id (the chain values make retries safe).
func encodeBatch(msgs []kafka.Message, now time.Time) []byte {
	size := batchHeaderLen
	for _, m := range msgs {
		size += len(m.Key) + len(m.Value) + 24
	}
	ts := now.UnixMilli()
	b := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(len(msgs) - 1), FirstTimestamp: ts, MaxTimestamp: ts,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(msgs))}
	out := b.AppendTo(make([]byte, 0, size))
	var scratch []byte
	for i, m := range msgs {
		if i%yieldEvery == yieldEvery-1 {
			runtime.Gosched() // see seal
		}
		r := kmsg.Record{OffsetDelta: int32(i), Key: m.Key, Value: m.Value}
		// Length is everything after it: encode with 0 (one byte), then
		// prefix the body with its real length.
		scratch = r.AppendTo(scratch[:0])
		body := scratch[1:]
		out = binary.AppendVarint(out, int64(len(body)))
		out = append(out, body...)
	}
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out
}
