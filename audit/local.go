package audit

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"runtime"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-proxy/sluice/logbroker"
)

// localWriter appends to the bundled broker in this process: the same
// storage, offsets, checks and durability as a Produce request, without
// the TCP round trip and the request encoding and decoding on both sides.
type localWriter struct {
	broker *logbroker.Broker
	// chosen: records carry the partition their chain chose; otherwise
	// the key's hash picks it.
	chosen bool
	// groups is reused between writes, with its index slices: per topic
	// and partition, the positions of its records in order (copying the
	// records themselves into groups cost more than encoding them).
	groups []recordGroup
	n      int
	// buf is the encoded batch, reused: the broker writes it to its log
	// before Append returns and keeps no reference. Fresh megabytes per
	// write cost page faults that showed as a third of the producer's CPU.
	buf []byte
}

// maxKeptBuf bounds the encoding buffer kept between writes.
const maxKeptBuf = 4 << 20

type recordGroup struct {
	topic     string
	partition int
	idx       []int32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (w *localWriter) WriteRecords(ctx context.Context, recs []Record) error {
	w.n = 0
	counts := map[string]int{}
	for i, r := range recs {
		part := r.Partition
		if !w.chosen {
			n, ok := counts[r.Topic]
			if !ok {
				var err error
				if n, err = w.broker.Partitions(r.Topic); err != nil {
					return err
				}
				counts[r.Topic] = n
			}
			part = partitionOf(r.Key, n)
		}
		w.add(r.Topic, part, i)
	}
	now := time.Now()
	var wait func(context.Context) error
	for _, g := range w.groups[:w.n] {
		var err error
		w.buf = encodeBatch(w.buf[:0], recs, g.idx, now)
		var base int64
		if base, wait, err = w.broker.Append(g.topic, int32(g.partition), w.buf); err != nil {
			return err
		}
		for n, i := range g.idx {
			recs[i].Offset = base + int64(n)
		}
	}
	if cap(w.buf) > maxKeptBuf {
		w.buf = nil
	}
	if wait == nil {
		return nil
	}
	// One flush covers every partition appended to.
	return wait(ctx)
}

func (w *localWriter) add(topic string, part, i int) {
	for k := range w.groups[:w.n] {
		if g := &w.groups[k]; g.topic == topic && g.partition == part {
			g.idx = append(g.idx, int32(i))
			return
		}
	}
	if w.n == len(w.groups) {
		w.groups = append(w.groups, recordGroup{})
	}
	g := &w.groups[w.n]
	g.topic, g.partition, g.idx = topic, part, append(g.idx[:0], int32(i))
	w.n++
}

func (w *localWriter) Close() error { return nil }

func (w *localWriter) CreateTopics(_ context.Context, topics []string) error {
	for _, t := range topics {
		if _, err := w.broker.CreateTopic(t); err != nil {
			return err
		}
	}
	return nil
}

// batchHeaderLen is the size of a RecordBatch v2 header; the records follow.
const batchHeaderLen = 61

// encodeBatch appends to dst one uncompressed RecordBatch v2 of the
// records at idx, timestamped now, with no producer id (the chain values
// make retries safe).
func encodeBatch(dst []byte, recs []Record, idx []int32, now time.Time) []byte {
	size := batchHeaderLen
	for _, i := range idx {
		size += len(recs[i].Key) + len(recs[i].Value) + 24
	}
	ts := now.UnixMilli()
	b := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(len(idx) - 1), FirstTimestamp: ts, MaxTimestamp: ts,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(idx))}
	start := len(dst)
	out := b.AppendTo(slices.Grow(dst, size))
	for n, i := range idx {
		if n%yieldEvery == yieldEvery-1 {
			runtime.Gosched() // see seal
		}
		rec := &recs[i]
		r := kmsg.Record{OffsetDelta: int32(n), Key: rec.Key, Value: rec.Value}
		// Length is everything after it; with it known up front the record
		// is encoded straight into the batch.
		r.Length = int32(recordBodyLen(&r))
		out = r.AppendTo(out)
	}
	batch := out[start:]
	binary.BigEndian.PutUint32(batch[8:], uint32(len(batch)-12))
	binary.BigEndian.PutUint32(batch[17:], crc32.Checksum(batch[21:], castagnoli))
	return out
}

// recordBodyLen is the encoded size of r after its length: attributes,
// timestamp and offset deltas, key, value and a header count of zero.
func recordBodyLen(r *kmsg.Record) int {
	n := 1 + varintLen(r.TimestampDelta64) + varintLen(int64(r.OffsetDelta)) + 1
	for _, f := range [][]byte{r.Key, r.Value} {
		if f == nil {
			n += varintLen(-1)
		} else {
			n += varintLen(int64(len(f))) + len(f)
		}
	}
	return n
}

func varintLen(v int64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutVarint(buf[:], v)
}
