package audit

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-proxy/sluice/logbroker"
)

// Producer sends records to Kafka or the bundled broker in the background,
// in batches, through a bounded queue, so that callers do not wait on the
// broker. It carries Genlog's records and the topology events of
// sluice.events.
type Producer struct {
	w     recordWriter
	queue *recordQueue
	log   *slog.Logger
	block bool
	spill *spill
	// chains, with ProducerConfig.Chain, holds each topic's last chain values.
	chains     map[string]*chainState
	chainOwner string
	// doubt holds the records of the last failed write, resolved against
	// the broker before the next one (exactly-once delivery of the trail).
	doubt inDoubt
	// sealInPlace: records are sealed in their own spare capacity, and
	// their arrays recycled once written. Only with the in-process broker,
	// which is done with a batch when its write returns; a Kafka client
	// may still hold one after a timeout.
	sealInPlace bool
	// brokers are how to reach the brokers, to read partition tails (and,
	// without Local, to write).
	brokers Kafka
	// linger, when set, lets a batch gather records this long after its
	// first: the bundled broker fsyncs each write, and a write per record
	// would cost an fsync per query.
	linger      time.Duration
	lingerTimer *time.Timer
	// full ends a linger early: Send signals it once flushAt records wait,
	// so a burst never fills the queue while the producer sleeps.
	full    chan struct{}
	flushAt int
	// signer, when set, signs a checkpoint of each partition written to at
	// least every cpInterval while records flow, and at Close
	// (checkpoint.go); cp is the state since the last, cpLatest what was
	// signed last, for the admin API.
	signer     ed25519.PrivateKey
	cpInterval time.Duration
	cpLast     time.Time
	cp         map[cpKey]*cpState
	cpMu       sync.Mutex
	cpLatest   map[cpKey]Checkpoint
	// spillPending is the spill file's undelivered bytes, for the metric.
	spillPending atomic.Int64
	wg           sync.WaitGroup

	sent, dropped, failed, spilled prometheus.Counter
	depth                          prometheus.GaugeFunc
	spillBytes                     prometheus.GaugeFunc
}

// recordWriter is what the producer sends batches through: kafkaWriter for
// a Kafka cluster, or localWriter for the bundled broker in this process.
type recordWriter interface {
	WriteRecords(ctx context.Context, recs []Record) error
	Close() error
}

// topicCreator is a recordWriter that can create topics ahead of records.
type topicCreator interface {
	CreateTopics(ctx context.Context, topics []string) error
}

// CreateTopics makes the topics exist before their first record, so a
// consumer can subscribe at once: in the bundled broker in process, or
// with a CreateTopics request (the brokers' default partitions and
// replication); a topic that exists already is fine.
func (p *Producer) CreateTopics(ctx context.Context, topics ...string) error {
	c, ok := p.w.(topicCreator)
	if !ok {
		return nil
	}
	return c.CreateTopics(ctx, topics)
}

// ProducerConfig configures a producer.
type ProducerConfig struct {
	// Kafka is the brokers and how to reach them (TLS, SASL).
	Kafka Kafka
	// Compression of batches to a Kafka cluster: none, gzip, snappy, lz4
	// or zstd.
	Compression string
	// QueueSize bounds records waiting to be sent; more are dropped and counted.
	QueueSize int
	// Name labels the metrics ("events", "genlog").
	Name string
	// Block makes Send wait for room instead of dropping.
	Block bool
	// SpillFile, when set, keeps records the broker does not take in this
	// file, replayed in order once it takes them again: nothing is lost and
	// no caller waits. SpillMaxBytes bounds it (0: unlimited).
	SpillFile     string
	SpillMaxBytes int64
	// Chain seals each record with a hash chaining it to the previous
	// record of its partition written by ChainOwner (the records' "proxy":
	// instances sharing a topic keep separate chains), for tamper evidence.
	Chain      bool
	ChainOwner string
	// SigningKey, with Chain, signs checkpoints of the chains into
	// <topic>.checkpoints every CheckpointInterval (default 1s) while
	// records flow, and at Close.
	SigningKey         ed25519.PrivateKey
	CheckpointInterval time.Duration
	// Local, when set, is the bundled broker in this process (Kafka
	// still names its listener, for reading partition tails): records are
	// appended to it directly instead of through a Kafka connection.
	Local *logbroker.Broker
}

// NewProducer starts a producer; Close flushes and stops it.
func NewProducer(cfg ProducerConfig, log *slog.Logger) (*Producer, error) {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	p := &Producer{
		queue:   newRecordQueue(cfg.QueueSize),
		log:     log,
		block:   cfg.Block,
		brokers: cfg.Kafka,
	}
	if cfg.Chain {
		p.chains = map[string]*chainState{}
		p.chainOwner = cfg.ChainOwner
		if cfg.SigningKey != nil {
			p.signer, p.cpInterval = cfg.SigningKey, cfg.CheckpointInterval
			if p.cpInterval <= 0 {
				p.cpInterval = time.Second
			}
			p.cp, p.cpLatest = map[cpKey]*cpState{}, map[cpKey]Checkpoint{}
		}
	}
	if cfg.Local == nil {
		w, err := newKafkaWriter(cfg)
		if err != nil {
			return nil, err
		}
		p.w = w
	} else {
		p.w = &localWriter{broker: cfg.Local, chosen: cfg.Chain}
		p.sealInPlace = true
		p.linger = localLinger
		p.lingerTimer = time.NewTimer(time.Hour)
		p.lingerTimer.Stop()
		p.full = make(chan struct{}, 1)
		p.flushAt = min(cfg.QueueSize/2, maxBatch)
	}
	labels := prometheus.Labels{"producer": cfg.Name}
	p.sent = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_producer_records_sent_total", Help: "Records delivered to the broker.", ConstLabels: labels})
	p.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_producer_records_dropped_total", Help: "Records dropped because the queue was full.", ConstLabels: labels})
	p.failed = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_producer_records_failed_total", Help: "Records the broker did not take.", ConstLabels: labels})
	p.spilled = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_producer_records_spilled_total", Help: "Records written to the spill file while the broker was away.", ConstLabels: labels})
	p.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_producer_queue_depth", Help: "Records waiting to be sent.", ConstLabels: labels},
		func() float64 { return float64(p.queue.len()) })
	p.spillBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_producer_spill_bytes", Help: "Bytes in the spill file not yet delivered.", ConstLabels: labels},
		func() float64 { return float64(p.spillPending.Load()) })
	if cfg.SpillFile != "" {
		sp, err := openSpill(cfg.SpillFile, cfg.SpillMaxBytes)
		if err != nil {
			return nil, err
		}
		p.spill = sp
		p.spillPending.Store(sp.size - sp.readPos)
		if sp.pending() {
			log.Info("replaying records spilled before the last stop", "file", cfg.SpillFile, "bytes", sp.size-sp.readPos)
		}
	}
	p.wg.Add(1)
	go p.run()
	return p, nil
}

// Collectors are the producer's metrics.
func (p *Producer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{p.sent, p.dropped, p.failed, p.spilled, p.depth, p.spillBytes}
}

// Send queues a record; the producer owns it from then on. When the queue
// is full it waits (Block) or drops the record, counts it and reports false.
func (p *Producer) Send(r Record) bool {
	n, ok := p.queue.put(r, p.block)
	if !ok {
		p.dropped.Inc()
		return false
	}
	if p.full != nil && n >= p.flushAt {
		signal(p.full)
	}
	return true
}

func (p *Producer) run() {
	defer p.wg.Done()
	var batch []Record // grows to what the traffic needs, at most maxBatch
	retry := time.NewTimer(0)
	defer retry.Stop()
	backoff := 100 * time.Millisecond
	var tick <-chan time.Time
	if p.signer != nil {
		t := time.NewTicker(p.cpInterval)
		defer t.Stop()
		tick = t.C
	}
	// checkpoint writes the checkpoints due (on the ticker and at Close:
	// every partition written to since the last), spilling them when the
	// broker is away.
	checkpoint := func(force bool) {
		if p.signer == nil || !force && time.Since(p.cpLast) < p.cpInterval {
			return
		}
		p.cpLast = time.Now()
		recs, done := p.dueCheckpoints(p.cpLast)
		if len(recs) == 0 {
			return
		}
		if p.spill != nil && p.spill.pending() {
			p.toSpill(recs) // after the records spilled before them
			done()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.w.WriteRecords(ctx, recs)
		cancel()
		switch {
		case err == nil:
			done()
		case p.spill != nil:
			p.log.Warn("broker unavailable; spilling checkpoints to disk until it is back", "file", p.spill.path, "err", err)
			p.toSpill(recs)
			done()
			backoff = 100 * time.Millisecond
			retry.Reset(backoff)
		default:
			p.log.Warn("checkpoints not delivered to the broker; the next ones will cover their records", "err", err)
		}
	}
	defer checkpoint(true)
	for {
		if p.spill != nil && p.spill.pending() {
			// Spilling: new records join the file behind the older ones, so
			// order holds; the file is replayed while the broker takes it.
			select {
			case <-p.queue.ready:
				var done bool
				batch, done = p.gather(recycle(batch))
				if len(batch) > 0 {
					p.toSpill(batch)
				}
				if done {
					p.drainSpill()
					return
				}
			case <-tick:
				checkpoint(true)
			case <-retry.C:
				if p.replay() {
					backoff = 100 * time.Millisecond
					retry.Reset(0)
					checkpoint(false)
				} else {
					backoff = min(2*backoff, 5*time.Second)
					retry.Reset(backoff)
				}
			}
			continue
		}
		select {
		case <-p.queue.ready:
		case <-tick:
			checkpoint(true)
			continue
		}
		var done bool
		batch, done = p.gather(recycle(batch))
		if len(batch) == 0 {
			if done {
				return
			}
			continue
		}
		err := p.write(batch)
		if err == nil {
			checkpoint(false)
		}
		if done && err == nil {
			return
		}
		if err != nil {
			if p.spill == nil {
				p.failed.Add(float64(len(batch)))
				p.log.Warn("records not delivered to the broker", "records", len(batch), "err", err)
				continue
			}
			p.log.Warn("broker unavailable; spilling records to disk until it is back", "file", p.spill.path, "err", err)
			p.toSpill(batch)
			backoff = 100 * time.Millisecond
			retry.Reset(backoff)
		}
	}
}

// localLinger is how long a batch to the bundled broker gathers records:
// Kafka's linger.ms. Each batch costs a round of sealing, appending and an
// fsync per partition, so fewer, larger batches cost the proxy less:
// measured on oltp_point_select with Genlog on, 200 ms instead of 50 ms
// took Genlog's CPU per query from +14% to +8%. A burst that fills half the
// queue ends the wait early (see full).
const localLinger = 200 * time.Millisecond

// maxBatch bounds the records of one batch.
const maxBatch = 16384

// gather takes what is queued, up to maxBatch records, after the linger
// time unless the batch can already be filled; done reports that the queue
// is closed and empty.
func (p *Producer) gather(batch []Record) ([]Record, bool) {
	if n, closed := p.queue.state(); p.linger > 0 && n < p.flushAt && !closed {
		// Sleep rather than wait on the queue: a receive per record
		// would wake this goroutine once per query.
		select {
		case <-p.full: // stale: from before the last batch
		default:
		}
		p.lingerTimer.Reset(p.linger)
		select {
		case <-p.lingerTimer.C:
		case <-p.full:
			p.lingerTimer.Stop()
		}
	}
	return p.queue.take(batch, maxBatch)
}

// recycle empties a written batch for the next, clearing its records so
// that its buffer, which becomes the queue's, keeps none of them alive.
func recycle(batch []Record) []Record {
	clear(batch)
	return batch[:0]
}

// write delivers batch. When it fails, batch holds the records as they
// were given (sealing is undone), for the spill file or a retry.
func (p *Producer) write(batch []Record) error {
	commit := func() {}
	n := len(batch)
	toSend := batch
	if p.chains != nil {
		if p.doubt != nil {
			if err := p.resolveInDoubt(); err != nil {
				return err
			}
		}
		sealed, c, err := p.seal(batch)
		if err != nil {
			p.unseal(batch)
			return err
		}
		toSend, commit = sealed, c
	}
	if len(toSend) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.w.WriteRecords(ctx, toSend); err != nil {
			if p.chains != nil {
				p.noteInDoubt(toSend)
				p.unseal(batch)
			}
			return err
		}
	}
	commit()
	p.noteWritten(toSend)
	p.sent.Add(float64(n))
	if p.sealInPlace {
		for i := range toSend {
			toSend[i].release()
		}
	}
	return nil
}

func (p *Producer) toSpill(batch []Record) {
	if err := p.spill.append(batch); err != nil {
		p.dropped.Add(float64(len(batch)))
		p.log.Error("records dropped: cannot spill them", "records", len(batch), "err", err)
		return
	}
	p.spilled.Add(float64(len(batch)))
	p.spillPending.Store(p.spill.size - p.spill.readPos)
}

// replay sends spilled records from the file; false when the broker is
// still away.
func (p *Producer) replay() bool {
	for p.spill.pending() {
		recs, pos, err := p.spill.next(4096)
		if err == nil {
			err = p.write(recs)
		}
		if err != nil {
			return false
		}
		if err := p.spill.advance(pos); err != nil {
			p.log.Error("cannot record the spill file's replay position", "err", err)
		}
		p.spillPending.Store(p.spill.size - p.spill.readPos)
	}
	p.log.Info("spilled records delivered; the broker is back")
	return true
}

// drainSpill tries, at Close, to deliver what is spilled; what is left
// stays in the file for the next start.
func (p *Producer) drainSpill() {
	if !p.replay() {
		p.log.Warn("broker still unavailable at stop; spilled records wait in the file for the next start",
			"file", p.spill.path, "bytes", p.spill.size-p.spill.readPos)
	}
}

// Close sends what is queued (or spills it) and stops.
func (p *Producer) Close() error {
	p.queue.close()
	signal(p.full)
	p.wg.Wait()
	if p.spill != nil {
		p.spill.close()
	}
	return p.w.Close()
}

// isCheckpoint reports whether topic holds signed checkpoints, which are
// not chained.
func (p *Producer) isCheckpoint(topic string) bool {
	return p.signer != nil && strings.HasSuffix(topic, ".checkpoints")
}
