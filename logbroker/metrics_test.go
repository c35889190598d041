package logbroker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// gathered is one scrape: metric name -> label values joined by "/" in
// label name order (partition/topic) -> value.
type gathered map[string]map[string]float64

func gather(t *testing.T, reg *prometheus.Registry) gathered {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := gathered{}
	for _, mf := range mfs {
		m := map[string]float64{}
		for _, metric := range mf.GetMetric() {
			key := ""
			for i, lp := range metric.GetLabel() {
				if i > 0 {
					key += "/"
				}
				key += lp.GetValue()
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				m[key] = metric.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				m[key] = metric.GetGauge().GetValue()
			}
		}
		out[mf.GetName()] = m
	}
	return out
}

func TestMetrics(t *testing.T) {
	for k := range supportedAPIs {
		if k < 0 || k >= apiKeySlots {
			t.Fatalf("api key %d does not fit the request counters (apiKeySlots %d)", k, apiKeySlots)
		}
	}
	tb := startBroker(t, Config{Partitions: 2}, "")
	reg := prometheus.NewRegistry()
	if err := reg.Register(tb.Collector()); err != nil {
		t.Fatal(err)
	}
	if g := gather(t, reg); g["sluice_broker_produced_records_total"][""] != 0 || g["sluice_broker_requests_total"]["Produce"] != 0 {
		t.Fatalf("fresh broker: %v", g)
	}

	const topic = "audit.metrics"
	prod := newFranzClient(t, tb.addr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceNumbered(t, prod, topic, 0, 30) // all to partition 0
	cons := newFranzClient(t, tb.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond)) // a long poll holds its connection open
	consumeN(t, cons, 30, 30*time.Second)

	stats := tb.Stats()
	if len(stats) != 2 || stats[0].HighWatermark != 30 || stats[0].Bytes == 0 {
		t.Fatalf("Stats: %+v", stats)
	}
	g := gather(t, reg)
	check := func(name, labels string, want float64) {
		t.Helper()
		got, ok := g[name][labels]
		if !ok || got != want {
			t.Errorf("%s{%s} = %v (present %v), want %v", name, labels, got, ok, want)
		}
	}
	check("sluice_broker_partition_high_watermark", "0/"+topic, 30)
	check("sluice_broker_partition_high_watermark", "1/"+topic, 0)
	check("sluice_broker_partition_log_start_offset", "0/"+topic, 0)
	check("sluice_broker_partition_bytes", "0/"+topic, float64(stats[0].Bytes))
	check("sluice_broker_partition_bytes", "1/"+topic, 0)
	check("sluice_broker_partition_segments", "0/"+topic, 1)
	check("sluice_broker_produced_records_total", "", 30)
	check("sluice_broker_rejected_connections_total", "", 0)
	// The consumer has read every stored byte, each batch once.
	check("sluice_broker_fetched_bytes_total", "", float64(stats[0].Bytes))
	reqs := g["sluice_broker_requests_total"]
	for _, api := range []string{"ApiVersions", "Metadata", "Produce", "Fetch", "ListOffsets"} {
		if reqs[api] < 1 {
			t.Errorf("sluice_broker_requests_total{api=%q} = %v, want >= 1", api, reqs[api])
		}
	}
	if len(reqs) != len(supportedAPIs) {
		t.Errorf("requests_total has %d series, want one per served api (%d)", len(reqs), len(supportedAPIs))
	}
	if c := g["sluice_broker_connections"][""]; c < 2 {
		t.Errorf("sluice_broker_connections = %v with two clients open", c)
	}

	prod.Close()
	cons.Close()
	waitFor(t, 10*time.Second, "clients to disconnect", func() bool { return tb.connCount() == 0 })
	check = func(name, labels string, want float64) {
		t.Helper()
		if got := gather(t, reg)[name][labels]; got != want {
			t.Errorf("%s{%s} = %v, want %v", name, labels, got, want)
		}
	}
	check("sluice_broker_connections", "", 0)
}
