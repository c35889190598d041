package logbroker

import (
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// apiKeySlots bounds the api keys counted in brokerCounters.requests; every
// key in supportedAPIs is below it (checked by TestMetrics).
const apiKeySlots = 64

// brokerCounters are the broker's monotonic counters. They are plain
// atomics bumped on the request path and read only at scrape time, so
// serving a request costs no label lookup.
type brokerCounters struct {
	requests        [apiKeySlots]atomic.Uint64 // by api key
	producedRecords atomic.Uint64
	fetchedBytes    atomic.Uint64
	refused         atomic.Uint64 // connections refused in the TLS handshake
	authFailures    atomic.Uint64 // failed SASL authentications
}

func (c *brokerCounters) countRequest(key int16) {
	if uint16(key) < apiKeySlots {
		c.requests[key].Add(1)
	}
}

// servedAPIs are the keys of supportedAPIs in order, with their names.
var servedAPIs = func() []struct {
	key  int16
	name string
} {
	out := make([]struct {
		key  int16
		name string
	}, 0, len(supportedAPIs))
	for k := range supportedAPIs {
		out = append(out, struct {
			key  int16
			name string
		}{k, kmsg.NameForKey(k)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}()

// collector exports a broker's state, computed at scrape time.
type collector struct {
	b *Broker

	hw, logStart, bytes, segments *prometheus.Desc
	conns, rejected               *prometheus.Desc
	requests, produced, fetched   *prometheus.Desc
	refused, authFailures         *prometheus.Desc
}

// Collector returns a Prometheus collector for the broker's partitions,
// connections and request counters. Values are read from Stats and from
// counters when scraped; register it once per broker.
//
// Metrics: sluice_broker_partition_high_watermark,
// sluice_broker_partition_log_start_offset, sluice_broker_partition_bytes
// and sluice_broker_partition_segments (labels topic, partition);
// sluice_broker_connections; sluice_broker_rejected_connections_total;
// sluice_broker_requests_total (label api, e.g. "Produce");
// sluice_broker_produced_records_total; sluice_broker_fetched_bytes_total
// (record batch bytes sent in fetch responses);
// sluice_broker_tls_refused_connections_total;
// sluice_broker_sasl_failures_total.
func (b *Broker) Collector() prometheus.Collector {
	part := []string{"topic", "partition"}
	return &collector{
		b:            b,
		hw:           prometheus.NewDesc("sluice_broker_partition_high_watermark", "Offset after the last record of the partition.", part, nil),
		logStart:     prometheus.NewDesc("sluice_broker_partition_log_start_offset", "First offset still stored in the partition.", part, nil),
		bytes:        prometheus.NewDesc("sluice_broker_partition_bytes", "On-disk size of the partition's log segments.", part, nil),
		segments:     prometheus.NewDesc("sluice_broker_partition_segments", "Number of log segments of the partition.", part, nil),
		conns:        prometheus.NewDesc("sluice_broker_connections", "Kafka client connections being served.", nil, nil),
		rejected:     prometheus.NewDesc("sluice_broker_rejected_connections_total", "Connections closed at accept because broker.max_connections was reached.", nil, nil),
		requests:     prometheus.NewDesc("sluice_broker_requests_total", "Requests decoded, by Kafka API.", []string{"api"}, nil),
		produced:     prometheus.NewDesc("sluice_broker_produced_records_total", "Records appended by produce requests.", nil, nil),
		fetched:      prometheus.NewDesc("sluice_broker_fetched_bytes_total", "Record batch bytes sent in fetch responses.", nil, nil),
		refused:      prometheus.NewDesc("sluice_broker_tls_refused_connections_total", "Connections closed because their TLS handshake failed (plaintext clients, refused client certificates).", nil, nil),
		authFailures: prometheus.NewDesc("sluice_broker_sasl_failures_total", "Failed SASL authentications.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hw, c.logStart, c.bytes, c.segments, c.conns, c.rejected, c.requests, c.produced, c.fetched, c.refused, c.authFailures} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	for _, st := range b.Stats() {
		p := strconv.Itoa(int(st.Partition))
		ch <- prometheus.MustNewConstMetric(c.hw, prometheus.GaugeValue, float64(st.HighWatermark), st.Topic, p)
		ch <- prometheus.MustNewConstMetric(c.logStart, prometheus.GaugeValue, float64(st.LogStartOffset), st.Topic, p)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes), st.Topic, p)
		ch <- prometheus.MustNewConstMetric(c.segments, prometheus.GaugeValue, float64(st.Segments), st.Topic, p)
	}
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(b.connCount()))
	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(b.rejected.Load()))
	for _, api := range servedAPIs {
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(b.counters.requests[api.key].Load()), api.name)
	}
	ch <- prometheus.MustNewConstMetric(c.produced, prometheus.CounterValue, float64(b.counters.producedRecords.Load()))
	ch <- prometheus.MustNewConstMetric(c.fetched, prometheus.CounterValue, float64(b.counters.fetchedBytes.Load()))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(b.counters.refused.Load()))
	ch <- prometheus.MustNewConstMetric(c.authFailures, prometheus.CounterValue, float64(b.counters.authFailures.Load()))
}
