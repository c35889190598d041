package logbroker

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestConfigValidate(t *testing.T) {
	var zero Config
	if err := zero.Validate(); err != nil {
		t.Fatalf("zero config (all defaults) invalid: %v", err)
	}
	d := zero.WithDefaults()
	if d.Listen != DefaultListen || d.Partitions != 4 || d.Retention != 168*time.Hour || d.Fsync != FsyncAlways || !*d.AutoCreateTopics || d.MaxConnections != 1024 {
		t.Fatalf("unexpected defaults: %+v", d)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Partitions: -1}, "broker.partitions: must be >= 1"},
		{Config{Listen: "nope"}, "broker.listen:"},
		{Config{AdvertisedListen: "host:99999"}, "broker.advertised_listen:"},
		{Config{Fsync: "sometimes"}, "broker.fsync: unknown policy"},
		{Config{SegmentBytes: 10}, "broker.segment_bytes:"},
		{Config{RetentionBytes: -5}, "broker.retention_bytes:"},
		{Config{MaxRequestBytes: 10}, "broker.max_request_bytes:"},
		{Config{MaxConnections: -1}, "broker.max_connections: must be >= 1"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want prefix %q", tc.cfg, err, tc.want)
		}
	}
}

// openTestPartition opens a bare partition with the given settings.
func openTestPartition(t *testing.T, dir string, cfg Config, configs map[string]string) *partition {
	t.Helper()
	cfg = cfg.WithDefaults()
	settings, err := resolveSettings(cfg, configs)
	if err != nil {
		t.Fatal(err)
	}
	tp := &topic{name: "t", log: testLogger(t), configs: configs}
	tp.current.Store(&settings)
	p, err := openPartition(tp, 0, dir, newSyncer(FsyncOS, time.Second), tp.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.closeFiles() })
	return p
}

func appendOne(t *testing.T, p *partition, batch []byte) appendResult {
	t.Helper()
	batches, headers, err := splitBatches(batch)
	if err != nil {
		t.Fatal(err)
	}
	return p.append(batches, headers, time.Now())
}

func TestIdempotentProducer(t *testing.T) {
	dir := t.TempDir()
	p := openTestPartition(t, dir, Config{}, nil)
	recs := sampleBatch(t, 2)[batchHeaderLen:]
	batch := func(epoch int16, seq int32) []byte {
		return buildBatch(2, recs, 1000, 7, epoch, seq)
	}
	if r := appendOne(t, p, batch(0, 0)); r.code != 0 || r.base != 0 {
		t.Fatalf("first batch: %+v", r)
	}
	if r := appendOne(t, p, batch(0, 2)); r.code != 0 || r.base != 2 {
		t.Fatalf("second batch: %+v", r)
	}
	// A retry of the first batch: success with its original offset.
	if r := appendOne(t, p, batch(0, 0)); r.code != 0 || r.base != 0 {
		t.Fatalf("duplicate: %+v", r)
	}
	if p.hw != 4 {
		t.Fatalf("duplicate was stored: hw %d", p.hw)
	}
	if r := appendOne(t, p, batch(0, 9)); r.code != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("sequence gap: code %d", r.code)
	}
	if r := appendOne(t, p, batch(1, 0)); r.code != 0 || r.base != 4 {
		t.Fatalf("new epoch: %+v", r)
	}
	if r := appendOne(t, p, batch(0, 4)); r.code != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("stale epoch: code %d", r.code)
	}
	// The state is rebuilt from the log on restart.
	p.closeFiles()
	p2 := openTestPartition(t, dir, Config{}, nil)
	if r := appendOne(t, p2, batch(1, 0)); r.code != 0 || r.base != 4 || p2.hw != 6 {
		t.Fatalf("duplicate after restart: %+v hw %d", r, p2.hw)
	}
	if r := appendOne(t, p2, batch(1, 2)); r.code != 0 || r.base != 6 {
		t.Fatalf("next after restart: %+v", r)
	}
}

func TestSegmentsRollIndexAndRetention(t *testing.T) {
	dir := t.TempDir()
	p := openTestPartition(t, dir, Config{SegmentBytes: 4096, RetentionBytes: 8192}, nil)
	old := time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
	recs := sampleBatch(t, 10)[batchHeaderLen:]
	for i := 0; i < 100; i++ {
		ts := time.Now().UnixMilli()
		if i < 20 {
			ts = old
		}
		if r := appendOne(t, p, buildBatch(10, recs, ts, -1, -1, -1)); r.code != 0 {
			t.Fatalf("append %d: code %d", i, r.code)
		}
	}
	st := p.stats()
	if st.Segments < 5 || st.HighWatermark != 1000 {
		t.Fatalf("after appends: %+v", st)
	}
	// Reading from any offset starts at the batch containing it.
	for _, off := range []int64{0, 5, 10, 333, 999} {
		res := p.read(off, 1, true)
		h, err := checkBatch(res.data)
		if err != nil || h.BaseOffset > off || h.lastOffset() < off {
			t.Fatalf("read(%d): %v, batch %d-%d", off, err, h.BaseOffset, h.lastOffset())
		}
	}
	// A restart rebuilds a lost index of a closed segment.
	_, indexPath, _ := segmentPaths(p.dir, p.segments[1].base)
	os.Remove(indexPath)
	p.closeFiles()
	p = openTestPartition(t, dir, Config{SegmentBytes: 4096, RetentionBytes: 8192}, nil)
	if res := p.read(150, 1, true); len(res.data) == 0 {
		t.Fatal("read after index rebuild returned nothing")
	}

	// Retention by size keeps at most retention_bytes (plus the active
	// segment), deleting whole segments from the start.
	p.enforceRetention(time.Now())
	st = p.stats()
	if st.Bytes > 8192+4096 || st.LogStartOffset == 0 || st.HighWatermark != 1000 {
		t.Fatalf("after size retention: %+v", st)
	}
	if res := p.read(0, 1<<20, true); res.code != kerr.OffsetOutOfRange.Code {
		t.Fatalf("read below log start: code %d", res.code)
	}
	entries, _ := os.ReadDir(p.dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".log") && e.Name() < filepath.Base(p.segments[0].logPath) {
			t.Fatalf("deleted segment file %s still on disk", e.Name())
		}
	}
}

func TestRetentionByTime(t *testing.T) {
	dir := t.TempDir()
	p := openTestPartition(t, dir, Config{SegmentBytes: 2048, Retention: time.Hour}, nil)
	recs := sampleBatch(t, 10)[batchHeaderLen:]
	old := time.Now().Add(-2 * time.Hour).UnixMilli()
	for i := 0; i < 30; i++ {
		ts := old
		if i >= 20 {
			ts = time.Now().UnixMilli()
		}
		appendOne(t, p, buildBatch(10, recs, ts, -1, -1, -1))
	}
	p.enforceRetention(time.Now())
	st := p.stats()
	if st.LogStartOffset == 0 || st.LogStartOffset > 200 {
		t.Fatalf("time retention: log start %d, want old segments gone and new kept", st.LogStartOffset)
	}
	if res := p.read(st.LogStartOffset, 1<<20, true); res.code != 0 || len(res.data) == 0 {
		t.Fatalf("read at log start: %+v", res.code)
	}
}

func TestCompaction(t *testing.T) {
	tb := startBroker(t, Config{Partitions: 1, SegmentBytes: 4096}, "")
	cl := newFranzClient(t, tb.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "audit.state", 1, 1
	ct.Configs = []kmsg.CreateTopicsRequestTopicConfig{{Name: "cleanup.policy", Value: strPtr("compact")}}
	create.Topics = append(create.Topics, ct)
	resp, err := create.RequestWith(ctx, cl)
	if err != nil || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("CreateTopics: %v %+v", err, resp)
	}
	// 10 keys written 60 times each, one record per batch.
	prod := newFranzClient(t, tb.addr, kgo.DefaultProduceTopic("audit.state"), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(1))
	for round := 0; round < 60; round++ {
		for k := 0; k < 10; k++ {
			r := &kgo.Record{Key: []byte{'k', byte('0' + k)}, Value: []byte{byte(round)}}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	p := tb.partition("audit.state", 0)
	before := p.stats()
	tb.runMaintenance(ctx, time.Now())
	after := p.stats()
	if after.Bytes >= before.Bytes/2 {
		t.Fatalf("compaction kept %d of %d bytes", after.Bytes, before.Bytes)
	}
	// Every key's latest value is still readable, in offset order.
	cons := newFranzClient(t, tb.addr, kgo.ConsumeTopics("audit.state"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	latest := make(map[string]byte)
	var lastOffset int64 = -1
	for lastOffset < after.HighWatermark-1 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("timed out reading compacted topic")
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset <= lastOffset {
				t.Fatalf("offset %d after %d", r.Offset, lastOffset)
			}
			lastOffset = r.Offset
			latest[string(r.Key)] = r.Value[0]
		})
	}
	for k := 0; k < 10; k++ {
		if v, ok := latest[string([]byte{'k', byte('0' + k)})]; !ok || v != 59 {
			t.Fatalf("key k%d: latest value %d (present %v), want 59", k, v, ok)
		}
	}
}

// TestFetchLongPoll checks a fetch waits for data up to MaxWait and is woken
// by an append rather than by the timeout.
func TestFetchLongPoll(t *testing.T) {
	tb := startBroker(t, Config{Partitions: 1}, "")
	if _, err := tb.topic("poll", true); err != nil {
		t.Fatal(err)
	}
	fetch := func(wait time.Duration) (*kmsg.FetchResponse, time.Duration) {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(11)
		req.MaxWaitMillis, req.MinBytes, req.MaxBytes = int32(wait.Milliseconds()), 1, 1<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "poll"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.PartitionMaxBytes = 1 << 20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		start := time.Now()
		resp := tb.handleFetch(context.Background(), req, &connState{principal: anonymousPrincipal}).(*kmsg.FetchResponse)
		return resp, time.Since(start)
	}
	if _, took := fetch(200 * time.Millisecond); took < 200*time.Millisecond {
		t.Fatalf("empty fetch returned after %s, before MaxWait", took)
	}
	done := make(chan time.Duration, 1)
	var resp *kmsg.FetchResponse
	go func() {
		var took time.Duration
		resp, took = fetch(20 * time.Second)
		done <- took
	}()
	p := tb.partition("poll", 0)
	waitFor(t, 5*time.Second, "fetch to wait", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.waiters) == 1
	})
	appendOne(t, p, sampleBatch(t, 3))
	took := <-done
	if took > 10*time.Second {
		t.Fatalf("long poll not woken by append (took %s)", took)
	}
	sp := resp.Topics[0].Partitions[0]
	if sp.HighWatermark != 3 || sp.LastStableOffset != 3 || len(sp.RecordBatches) == 0 || sp.PreferredReadReplica != -1 {
		t.Fatalf("woken fetch: %+v", sp)
	}
}

// TestAcksZeroNoResponse sends an acks=0 produce then an ApiVersions on the
// same connection: the first answer must be the ApiVersions one.
func TestAcksZeroNoResponse(t *testing.T) {
	tb := startBroker(t, Config{Partitions: 1}, "")
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(8)
	produce.Acks = 0
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "fire.and.forget"
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = sampleBatch(t, 2)
	rt.Partitions = append(rt.Partitions, rp)
	produce.Topics = append(produce.Topics, rt)
	av := kmsg.NewPtrApiVersionsRequest()
	av.SetVersion(3)

	c, err := net.Dial("tcp", tb.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(append(rawFrame(produce, 100), rawFrame(av, 101)...))
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatal(err)
	}
	if corr := int32(binary.BigEndian.Uint32(hdr[4:])); corr != 101 {
		t.Fatalf("first response has correlation id %d, want 101 (ApiVersions)", corr)
	}
	if hw := tb.partition("fire.and.forget", 0).stats().HighWatermark; hw != 2 {
		t.Fatalf("acks=0 records not stored: hw %d", hw)
	}
}

func TestMetadataTopicsNullVsEmpty(t *testing.T) {
	tb := startBroker(t, Config{Partitions: 1}, "")
	tb.topic("a", true)
	for _, tc := range []struct {
		topics []kmsg.MetadataRequestTopic
		want   int
	}{{nil, 1}, {[]kmsg.MetadataRequestTopic{}, 0}} {
		req := kmsg.NewPtrMetadataRequest()
		req.SetVersion(9)
		req.Topics = tc.topics
		resp := tb.handleMetadata(req, &connState{principal: anonymousPrincipal}).(*kmsg.MetadataResponse)
		if len(resp.Topics) != tc.want || resp.ControllerID != 0 || len(resp.Brokers) != 1 || resp.Brokers[0].Port == 0 {
			t.Fatalf("topics %v: %+v", tc.topics, resp)
		}
	}
}

func TestSegmentRollByAgeAndOffsetForTime(t *testing.T) {
	p := openTestPartition(t, t.TempDir(), Config{SegmentAge: time.Hour}, nil)
	recs := sampleBatch(t, 5)[batchHeaderLen:]
	now := time.Now()
	for i := 0; i < 4; i++ {
		// Each append is "an hour and a bit" later: every one rolls.
		at := now.Add(time.Duration(i) * 61 * time.Minute)
		batches, headers, _ := splitBatches(buildBatch(5, recs, at.UnixMilli(), -1, -1, -1))
		if r := p.append(batches, headers, at); r.code != 0 {
			t.Fatalf("append %d: %d", i, r.code)
		}
	}
	if n := p.stats().Segments; n != 4 {
		t.Fatalf("%d segments after appends an hour apart, want 4", n)
	}
	off, ts, err := p.offsetForTime(now.Add(90 * time.Minute).UnixMilli())
	if err != nil || off != 10 || ts < 0 {
		t.Fatalf("offsetForTime: %d %d %v, want offset 10", off, ts, err)
	}
	if off, _, _ := p.offsetForTime(now.Add(24 * time.Hour).UnixMilli()); off != 20 {
		t.Fatalf("offsetForTime past the end: %d, want high watermark 20", off)
	}
}

func TestDescribeConfigsReportsTopicConfigs(t *testing.T) {
	tb := startBroker(t, Config{Partitions: 1}, "")
	if _, err := tb.createTopic("kv", 1, map[string]string{"cleanup.policy": "compact", "retention.ms": "60000"}); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrDescribeConfigsRequest()
	req.SetVersion(4)
	req.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "kv"}}
	resp := tb.handleDescribeConfigs(req, &connState{principal: anonymousPrincipal}).(*kmsg.DescribeConfigsResponse)
	got := make(map[string]string)
	for _, c := range resp.Resources[0].Configs {
		got[c.Name] = *c.Value
	}
	if got["cleanup.policy"] != "compact" || got["retention.ms"] != "60000" || got["segment.bytes"] == "" {
		t.Fatalf("configs: %v", got)
	}
	if !tb.partition("kv", 0).topic.settings().compact {
		t.Fatal("cleanup.policy=compact not applied")
	}
}

// TestCloseWithActiveClients closes the broker while a consumer long-polls
// and a producer is connected: Serve must return and Close must not hang.
func TestCloseWithActiveClients(t *testing.T) {
	tb := startBroker(t, Config{Partitions: 1}, "")
	prod := newFranzClient(t, tb.addr, kgo.DefaultProduceTopic("closing"))
	produceNumbered(t, prod, "closing", 0, 10)
	cons := newFranzClient(t, tb.addr, kgo.ConsumeTopics("closing"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(10*time.Second))
	consumeN(t, cons, 10, 10*time.Second)
	// The consumer is now in a long poll with nothing to read.
	closed := make(chan error, 1)
	go func() { closed <- tb.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung with clients connected")
	}
	select {
	case <-tb.done:
		tb.cancel = nil // already stopped
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

func TestDeleteTopicAndProducerIDsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	tb := startBroker(t, Config{DataDir: dir, Partitions: 2}, "")
	if _, err := tb.topic("doomed", true); err != nil {
		t.Fatal(err)
	}
	del := kmsg.NewPtrDeleteTopicsRequest()
	del.SetVersion(4)
	del.TopicNames = []string{"doomed", "never-existed"}
	resp := tb.handleDeleteTopics(del, &connState{principal: anonymousPrincipal}).(*kmsg.DeleteTopicsResponse)
	if resp.Topics[0].ErrorCode != 0 || resp.Topics[1].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("delete: %+v", resp.Topics)
	}
	if _, err := os.Stat(filepath.Join(dir, "doomed-0")); !os.IsNotExist(err) {
		t.Fatalf("partition directory still there: %v", err)
	}
	initPID := func(b *Broker) int64 {
		r := b.handleInitProducerID(kmsg.NewPtrInitProducerIDRequest(), &connState{principal: anonymousPrincipal}).(*kmsg.InitProducerIDResponse)
		if r.ErrorCode != 0 || r.ProducerEpoch != 0 {
			t.Fatalf("InitProducerID: %+v", r)
		}
		return r.ProducerID
	}
	first, second := initPID(tb.Broker), initPID(tb.Broker)
	if second <= first {
		t.Fatalf("producer ids %d then %d", first, second)
	}
	tb.stop(t)
	tb2 := startBroker(t, Config{DataDir: dir, Partitions: 2}, "")
	if third := initPID(tb2.Broker); third <= second {
		t.Fatalf("producer id %d reused after restart (had %d)", third, second)
	}
	if names := tb2.topicNames(); len(names) != 0 {
		t.Fatalf("deleted topic came back: %v", names)
	}
}
