package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaWriter writes records to a Kafka cluster with franz-go's idempotent
// producer (acks=all): the one place a Record becomes a kgo.Record. Within
// one producer id the brokers drop a batch they stored already, so the
// client's retries through leader changes, broker restarts and lost
// acknowledgements store each record once, in order (see doc.go).
type kafkaWriter struct {
	k    Kafka
	opts []kgo.Opt
	// mu guards cl: a client that still held records when a write gave
	// up is closed and replaced, so none of them can arrive after the
	// producer has resolved the write as failed.
	mu sync.Mutex
	cl *kgo.Client
	w  *connWatch
	// closing counts clients being closed in the background.
	closing sync.WaitGroup
	// down: the last write failed. The next asks first whether any broker
	// answers (pingTimeout), so that while the cluster is away the spill
	// file's replay fails at once rather than after writeTimeout.
	down atomic.Bool
}

// pingTimeout bounds the check that a broker answers, after a failed write.
const pingTimeout = 2 * time.Second

// writeGrace is how long a write that reached its deadline waits for the
// client to fail the records it holds before the client is replaced.
const writeGrace = time.Second

// Compression names genlog.compression may take.
var compressionNames = []string{"none", "gzip", "snappy", "lz4", "zstd"}

func compressionCodec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.NoCompression(), fmt.Errorf("unknown %q; use %s", name, strings.Join(compressionNames, ", "))
}

func newKafkaWriter(cfg ProducerConfig) (*kafkaWriter, error) {
	codec, err := compressionCodec(cfg.Compression)
	if err != nil {
		return nil, badSetting("compression", "%v", err)
	}
	opts := []kgo.Opt{
		// kgo produces idempotently unless told not to; that needs acks=all.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codec),
		kgo.AllowAutoTopicCreation(),
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(1 << 20),
		// Bounded: at most two of the producer's batches in the client.
		kgo.MaxBufferedRecords(2 * maxBatch),
		// A record the brokers have not taken within the write's deadline
		// fails (when the client can know it was not stored), and the
		// spill file takes it.
		kgo.RecordDeliveryTimeout(writeTimeout),
		kgo.UnknownTopicRetries(3),
	}
	if cfg.Chain {
		// Each record goes to the partition whose chain sealed it.
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	} else {
		opts = append(opts, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	}
	k := &kafkaWriter{k: cfg.Kafka, opts: opts}
	if _, err := k.client(); err != nil {
		return nil, err
	}
	return k, nil
}

// writeTimeout bounds one write, after which its records spill.
const writeTimeout = 10 * time.Second

func (k *kafkaWriter) client() (*kgo.Client, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cl == nil {
		cl, w, err := k.k.client(k.opts...)
		if err != nil {
			return nil, err
		}
		k.cl, k.w = cl, w
	}
	return k.cl, nil
}

// replace closes the client in the background; the next write makes a
// new one (with a new producer id).
func (k *kafkaWriter) replace(cl *kgo.Client) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cl != cl {
		return
	}
	k.cl = nil
	k.closing.Go(cl.Close)
}

// WriteRecords writes recs and sets each one's Offset from the brokers'
// acknowledgement (-1 for a record not stored).
func (k *kafkaWriter) WriteRecords(ctx context.Context, recs []Record) (err error) {
	cl, err := k.client()
	if err != nil {
		return err
	}
	defer func() { k.down.Store(err != nil) }()
	if k.down.Load() {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err := cl.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("no broker of %s answers: %w", strings.Join(k.k.Brokers, ","), k.k.explain(k.watch(), err))
		}
	}
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
		failN int
	)
	wg.Add(len(recs))
	for i := range recs {
		recs[i].Offset = -1
		r := &kgo.Record{Topic: recs[i].Topic, Key: recs[i].Key, Value: recs[i].Value, Partition: int32(recs[i].Partition)}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				errMu.Lock()
				failN++
				if first == nil {
					first = err
				}
				errMu.Unlock()
				return
			}
			recs[i].Offset = r.Offset
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	replaced := false
	select {
	case <-done:
	case <-ctx.Done():
		grace := time.NewTimer(writeGrace)
		defer grace.Stop()
		select {
		case <-done:
		case <-grace.C:
			// Records sent without an answer stay in the client: it cannot
			// know whether they were stored. Replace it, so that they never
			// arrive behind the producer's back; the producer resolves the
			// write against the partitions' ends.
			k.replace(cl)
			replaced = true
			<-done
		}
	}
	errMu.Lock()
	defer errMu.Unlock()
	if replaced {
		return fmt.Errorf("%d of %d records not acknowledged by %s within %v: %w", failN, len(recs),
			strings.Join(k.k.Brokers, ","), writeTimeout, k.k.explain(k.watch(), first))
	}
	if first != nil {
		return fmt.Errorf("%d of %d records failed: %w", failN, len(recs), k.k.explain(k.watch(), first))
	}
	return nil
}

func (k *kafkaWriter) watch() *connWatch {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.w
}

func (k *kafkaWriter) Close() error {
	k.mu.Lock()
	cl := k.cl
	k.cl = nil
	k.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	k.closing.Wait()
	return nil
}

// CreateTopics creates topics with the brokers' default partitions and
// replication; a topic that exists already is fine.
func (k *kafkaWriter) CreateTopics(ctx context.Context, topics []string) error {
	cl, err := k.client()
	if err != nil {
		return err
	}
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 5000
	for _, t := range topics {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = t, -1, -1
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, k.k.explain(k.watch(), err))
	}
	for _, t := range resp.Topics {
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t.Topic, k.k.explain(k.watch(), err))
		}
	}
	return nil
}

// trailReader reads partitions of the trail: their list, their first and
// end offsets, and ranges of records. One per operation; Close ends it.
type trailReader struct {
	k  Kafka
	cl *kgo.Client
	w  *connWatch
}

func (k Kafka) reader() (*trailReader, error) {
	cl, w, err := k.client()
	if err != nil {
		return nil, err
	}
	return &trailReader{k: k, cl: cl, w: w}, nil
}

func (r *trailReader) Close() { r.cl.Close() }

func (r *trailReader) explain(err error) error { return r.k.explain(r.w, err) }

// partitions lists topic's partitions, in order; none when the topic does
// not exist. With create, the request asks the brokers to create a
// missing topic (with their defaults), as the first producer would.
func (r *trailReader) partitions(ctx context.Context, topic string, create bool) ([]int, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = create
	resp, err := req.RequestWith(ctx, r.cl)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", topic, r.explain(err))
	}
	var parts []int
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.LeaderNotAvailable) {
				return nil, nil
			}
			return nil, fmt.Errorf("topic %s: %w", topic, r.explain(err))
		}
		for _, p := range t.Partitions {
			parts = append(parts, int(p.Partition))
		}
	}
	slices.Sort(parts)
	return parts, nil
}

// listOffsets asks each partition's leader for an offset: the first kept
// (-2), the end (-1), or the first at or after a time in milliseconds.
func (r *trailReader) listOffsets(ctx context.Context, topic string, parts []int, at int64) (map[int]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range parts {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = int32(p), at
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, r.cl)
	if err != nil {
		return nil, fmt.Errorf("topic %s: offsets: %w", topic, r.explain(err))
	}
	out := map[int]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("topic %s partition %d: offsets: %w", topic, p.Partition, r.explain(err))
			}
			out[int(p.Partition)] = p.Offset
		}
	}
	for _, p := range parts {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("topic %s partition %d: no offset in the brokers' answer", topic, p)
		}
	}
	return out, nil
}

// bounds are a partition's first kept and end offsets.
func (r *trailReader) bounds(ctx context.Context, topic string, part int) (first, end int64, err error) {
	firsts, err := r.listOffsets(ctx, topic, []int{part}, -2)
	if err != nil {
		return 0, 0, err
	}
	ends, err := r.listOffsets(ctx, topic, []int{part}, -1)
	if err != nil {
		return 0, 0, err
	}
	return firsts[part], ends[part], nil
}

// readStall is how long a read waits for the next record it knows is
// there before giving up.
const readStall = 15 * time.Second

// readRange calls fn with the records of a partition at offsets from to
// to (excluded), in order.
func (r *trailReader) readRange(ctx context.Context, topic string, part int, from, to int64, fn func(offset int64, value []byte)) error {
	if from >= to {
		return nil
	}
	return r.consume(ctx, topic, map[int]int64{part: from}, func(p int, offset int64, value []byte) bool {
		if offset < to {
			fn(offset, value)
		}
		return offset+1 < to
	}, map[int]int64{part: to})
}

// consume reads partitions of topic from the given offsets, calling fn
// with each record in order per partition, until fn returns false for a
// partition or it reaches its end in ends (nil: until ctx ends).
func (r *trailReader) consume(ctx context.Context, topic string, from map[int]int64, fn func(part int, offset int64, value []byte) bool, ends map[int]int64) error {
	at := map[int32]kgo.Offset{}
	next := map[int]int64{}
	for p, o := range from {
		if ends != nil && o >= ends[p] {
			continue
		}
		at[int32(p)] = kgo.NewOffset().At(o)
		next[p] = o
	}
	if len(at) == 0 {
		return nil
	}
	cl, w, err := r.k.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: at}),
		kgo.FetchMaxWait(500*time.Millisecond), kgo.FetchMaxPartitionBytes(16<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	progress := time.Now()
	for len(next) > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && ferr == nil {
				ferr = fmt.Errorf("topic %s partition %d: %w", topic, p, r.k.explain(w, err))
			}
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(rec *kgo.Record) {
			p := int(rec.Partition)
			n, ok := next[p]
			if !ok || rec.Offset < n {
				return
			}
			progress = time.Now()
			next[p] = rec.Offset + 1
			if !fn(p, rec.Offset, rec.Value) {
				delete(next, p)
			}
		})
		if ends != nil && time.Since(progress) > readStall {
			for p, n := range next {
				return fmt.Errorf("topic %s partition %d: no records readable at offset %d (its end is %d)", topic, p, n, ends[p])
			}
		}
	}
	return nil
}
