package logbroker

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// seedRequests are well-formed requests of the served kinds, the starting
// points for FuzzRequestDecode (also checked in under testdata/fuzz).
func seedRequests(t testing.TB) [][]byte {
	var out [][]byte
	add := func(req kmsg.Request, version int16) {
		req.SetVersion(version)
		out = append(out, rawFrame(req, 7)[4:])
	}
	add(kmsg.NewPtrApiVersionsRequest(), 3)
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = strPtr("t")
	meta.Topics = append(meta.Topics, mt)
	add(meta, 9)
	produce := kmsg.NewPtrProduceRequest()
	produce.Acks = -1
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "t"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = sampleBatch(t, 2)
	pt.Partitions = append(pt.Partitions, pp)
	produce.Topics = append(produce.Topics, pt)
	add(produce, 7)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "t"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	add(fetch, 12)
	lo := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "t"
	lt.Partitions = append(lt.Partitions, kmsg.NewListOffsetsRequestTopicPartition())
	lo.Topics = append(lo.Topics, lt)
	add(lo, 6)
	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Group = "g"
	add(oc, 8)
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Group = "g"
	add(of, 7)
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID = "g", "m"
	add(hb, 4)
	return out
}

// newFuzzBroker is one broker for all inputs of a fuzz run: fsync off, no
// auto-creation, one existing topic "t".
func newFuzzBroker(f *testing.F) *Broker {
	b, err := New(Config{DataDir: f.TempDir(), Partitions: 1, Fsync: FsyncOS, AutoCreateTopics: boolPtr(false)}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	if _, err := b.createTopic("t", 1, nil); err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzRequestDecode feeds arbitrary frames (after the size prefix) to the
// request decoder and, for requests that do not block, to the handlers and
// the response encoder. Nothing may panic, and no input may make kmsg spin
// on a huge tagged-field count (kmsg v1.15.1 stops once the input runs
// out; a regression shows up as a fuzzer hang).
func FuzzRequestDecode(f *testing.F) {
	for _, s := range seedRequests(f) {
		f.Add(s)
	}
	b := newFuzzBroker(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		h, req, err := decodeRequest(frame)
		if err != nil || req == nil {
			return
		}
		// Re-encoding a decoded request must give a decodable request.
		again := req.AppendTo(nil)
		req2 := kmsg.RequestForKey(h.key)
		req2.SetVersion(h.version)
		if err := req2.ReadFrom(again); err != nil {
			t.Fatalf("re-encoded %s v%d does not decode: %v", kmsg.NameForKey(h.key), h.version, err)
		}
		switch r := req.(type) {
		case *kmsg.JoinGroupRequest, *kmsg.SyncGroupRequest, *kmsg.CreateTopicsRequest,
			*kmsg.DeleteTopicsRequest, *kmsg.OffsetCommitRequest, *kmsg.InitProducerIDRequest:
			// These block or accumulate state (a group or file per input)
			// that would slow every later input; other tests cover them.
			return
		case *kmsg.FetchRequest:
			r.MaxWaitMillis = 0
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pr, err := b.dispatch(ctx, req, h, &connState{principal: anonymousPrincipal})
		if err != nil || pr == nil || pr.resp == nil {
			return
		}
		pr.resp.SetVersion(h.version)
		pr.resp.AppendTo(nil)
	})
}

// FuzzSegmentRecover appends arbitrary bytes to a segment holding two good
// batches and recovers it: the good batches must survive, and what is left
// must be a sequence of valid batches.
func FuzzSegmentRecover(f *testing.F) {
	good := append(sampleBatch(f, 3), sampleBatch(f, 2)...)
	f.Add([]byte{})
	f.Add(sampleBatch(f, 1)[:30])
	f.Add(sampleBatch(f, 4))
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x31garbage"))
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		pdir := filepath.Join(dir, "t-0")
		os.MkdirAll(pdir, 0o755)
		logPath, _, _ := segmentPaths(pdir, 0)
		data := append([]byte(nil), good...)
		setBatchBaseOffset(data, 0)
		setBatchBaseOffset(data[len(good)-len(sampleBatch(t, 2)):], 3)
		os.WriteFile(logPath, append(data, tail...), 0o644)

		cfg := Config{DataDir: dir}.WithDefaults()
		settings, _ := resolveSettings(cfg, nil)
		tp := &topic{name: "t", log: slog.New(slog.DiscardHandler)}
		tp.current.Store(&settings)
		p, err := openPartition(tp, 0, dir, newSyncer(FsyncOS, time.Second), tp.log)
		if err != nil {
			t.Fatalf("recover: %v", err)
		}
		defer p.closeFiles()
		if p.hw < 5 {
			t.Fatalf("high watermark %d, good batches lost", p.hw)
		}
		stored, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		_, headers, err := splitBatches(stored)
		if err != nil {
			t.Fatalf("recovered segment is not clean: %v", err)
		}
		next := int64(0)
		for _, h := range headers {
			if h.BaseOffset < next {
				t.Fatalf("offsets go backwards: %d after %d", h.BaseOffset, next)
			}
			next = h.lastOffset() + 1
		}
		if next != p.hw {
			t.Fatalf("high watermark %d, segment ends at %d", p.hw, next)
		}
		res := p.read(0, 1<<20, true)
		if res.code != 0 || len(res.data) != len(stored) {
			t.Fatalf("read after recovery: code %d, %d bytes of %d", res.code, len(res.data), len(stored))
		}
	})
}
