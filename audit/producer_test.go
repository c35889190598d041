package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"
)

// A batch lingers for more records, but once half the queue (or a whole
// batch) waits, it goes at once: a burst must not fill the queue, and then
// drop or spill records, while the producer sleeps.
func TestLingerEndsWhenTheQueueFills(t *testing.T) {
	p := &Producer{
		queue:       newRecordQueue(10),
		linger:      time.Hour,
		lingerTimer: time.NewTimer(time.Hour),
		full:        make(chan struct{}, 1),
		flushAt:     5,
	}
	p.lingerTimer.Stop()
	p.full <- struct{}{} // a stale signal from an earlier burst is ignored
	p.Send(Record{Topic: "t", Value: []byte("{}")})
	got := make(chan int, 1)
	go func() {
		batch, _ := p.gather(make([]Record, 0, maxBatch))
		got <- len(batch)
	}()
	select {
	case n := <-got:
		t.Fatalf("the batch went with %d record(s) before the queue filled or the linger ended", n)
	case <-time.After(50 * time.Millisecond):
	}
	for range 4 {
		if !p.Send(Record{Topic: "t", Value: []byte("{}")}) {
			t.Fatal("send refused with room in the queue")
		}
	}
	select {
	case n := <-got:
		if n != 5 {
			t.Fatalf("batch of %d records, want the 5 queued", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the batch still lingers with half the queue full")
	}
}

// An idle producer's memory is its queue's buffer, allocated whole: for
// Genlog's default 100,000 records it must stay well under the 15 MB that
// queueing whole kafka.Messages took, and no batch is allocated before
// records come.
func TestIdleProducerMemory(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p, err := NewProducer(ProducerConfig{Kafka: PlainKafka("127.0.0.1:1"), QueueSize: 100000, Name: "memory"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("a producer with a 100,000-record queue allocated %.1f MB before any record", float64(grew)/(1<<20))
	}
}

type failingWriter struct{ got [][]byte }

func (f *failingWriter) WriteRecords(_ context.Context, recs []Record) error {
	for _, r := range recs {
		f.got = append(f.got, bytes.Clone(r.Value))
	}
	return errors.New("disk full")
}
func (f *failingWriter) Close() error { return nil }

// Records are sealed in their own spare capacity for the in-process broker;
// a failed write must give them back as they were (they go to the spill
// file), while what was attempted was sealed.
func TestFailedWriteUnsealsRecords(t *testing.T) {
	w := &failingWriter{}
	p := &Producer{w: w, sealInPlace: true, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		chains: map[string]*chainState{"t": {last: make([][32]byte, 2), skip: make([]int, 2)}}}
	var batch []Record
	var want []string
	for i := range 5 {
		rec := fmt.Sprintf(`{"n":%d}`, i)
		want = append(want, rec)
		batch = append(batch, Record{Topic: "t", Key: []byte{byte('a' + i)}, Value: append(make([]byte, 0, 200), rec...)})
	}
	if err := p.write(batch); err == nil {
		t.Fatal("write to a failing writer succeeded")
	}
	for i, m := range batch {
		if string(m.Value) != want[i] {
			t.Fatalf("record %d after the failed write: %s, want %s", i, m.Value, want[i])
		}
	}
	for i, sealed := range w.got {
		rec, _, ok := unchainRecord(sealed)
		if !ok || string(rec) != want[i] {
			t.Fatalf("attempted record %d: %s", i, sealed)
		}
	}
	if len(p.doubt["t"]) == 0 {
		t.Fatal("the failed write's chain values were not kept for resolution")
	}
}
