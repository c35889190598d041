// Package kafkaout sends Sluice's own records (topology events now; the
// query log builds on it) to Kafka or the bundled broker, through a bounded
// queue, so that no caller ever waits on the broker.
package kafkaout

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Producer batches records to a Kafka cluster in the background.
type Producer struct {
	w     *kafka.Writer
	queue chan kafka.Message
	log   *slog.Logger
	block bool
	wg    sync.WaitGroup

	sent, dropped, failed prometheus.Counter
	depth                 prometheus.GaugeFunc
}

// Config of a producer.
type Config struct {
	Brokers []string
	// QueueSize bounds records waiting to be sent; more are dropped and counted.
	QueueSize int
	// Name labels the metrics ("events", "genlog").
	Name string
	// Block makes Send wait for room instead of dropping.
	Block bool
}

// New starts a producer; Close flushes and stops it.
func New(cfg Config, log *slog.Logger) *Producer {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	p := &Producer{
		w: &kafka.Writer{
			Addr:     kafka.TCP(cfg.Brokers...),
			Balancer: &kafka.Hash{},
			// WriteMessages waits for partial batches up to BatchTimeout:
			// keep it short and let batches grow while a call is in flight.
			BatchTimeout:           20 * time.Millisecond,
			BatchSize:              10000,
			BatchBytes:             16 << 20,
			RequiredAcks:           kafka.RequireAll,
			AllowAutoTopicCreation: true,
		},
		queue: make(chan kafka.Message, cfg.QueueSize),
		log:   log,
		block: cfg.Block,
	}
	labels := prometheus.Labels{"producer": cfg.Name}
	p.sent = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_producer_records_sent_total", Help: "Records delivered to the broker.", ConstLabels: labels})
	p.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_producer_records_dropped_total", Help: "Records dropped because the queue was full.", ConstLabels: labels})
	p.failed = prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_producer_records_failed_total", Help: "Records the broker did not take.", ConstLabels: labels})
	p.depth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_producer_queue_depth", Help: "Records waiting to be sent.", ConstLabels: labels},
		func() float64 { return float64(len(p.queue)) })
	p.wg.Add(1)
	go p.run()
	return p
}

// Collectors are the producer's metrics.
func (p *Producer) Collectors() []prometheus.Collector {
	return []prometheus.Collector{p.sent, p.dropped, p.failed, p.depth}
}

// Send queues a record. When the queue is full it waits (Block) or drops
// the record, counts it and reports false.
func (p *Producer) Send(topic string, key, value []byte) bool {
	if p.block {
		p.queue <- kafka.Message{Topic: topic, Key: key, Value: value}
		return true
	}
	select {
	case p.queue <- kafka.Message{Topic: topic, Key: key, Value: value}:
		return true
	default:
		p.dropped.Inc()
		return false
	}
}

func (p *Producer) run() {
	defer p.wg.Done()
	batch := make([]kafka.Message, 0, 16384)
	for msg := range p.queue {
		batch = append(batch[:0], msg)
	more:
		for len(batch) < cap(batch) {
			select {
			case m, ok := <-p.queue:
				if !ok {
					break more
				}
				batch = append(batch, m)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.w.WriteMessages(ctx, batch...)
		cancel()
		if err != nil {
			p.failed.Add(float64(len(batch)))
			p.log.Warn("records not delivered to the broker", "records", len(batch), "err", err)
			continue
		}
		p.sent.Add(float64(len(batch)))
	}
}

// Close sends what is queued and stops.
func (p *Producer) Close() error {
	close(p.queue)
	p.wg.Wait()
	return p.w.Close()
}
