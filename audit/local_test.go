package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The batch encoder writes each record's length before encoding it: the
// result must be what kmsg reads back, for every varint width.
func TestEncodeBatchReadsBack(t *testing.T) {
	var recs []Record
	for _, n := range []int{0, 1, 63, 64, 8191, 8192, 1 << 20} {
		recs = append(recs, Record{Key: []byte("k"), Value: []byte(strings.Repeat("v", n))})
	}
	recs = append(recs, Record{Value: []byte("no key")})
	idx := []int32{7, 0, 1, 2, 3, 4, 5, 6}
	raw := encodeBatch([]byte("left alone"), recs, idx, time.Now())[len("left alone"):]
	var batch kmsg.RecordBatch
	if err := batch.ReadFrom(raw); err != nil {
		t.Fatal(err)
	}
	if int(batch.Length) != len(raw)-12 || int(batch.NumRecords) != len(idx) {
		t.Fatalf("batch length %d (of %d bytes), %d records", batch.Length, len(raw), batch.NumRecords)
	}
	rest := batch.Records
	for n, i := range idx {
		var r kmsg.Record
		if err := r.ReadFrom(rest); err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		size := len(r.AppendTo(nil))
		if int(r.OffsetDelta) != n || !bytes.Equal(r.Key, recs[i].Key) || !bytes.Equal(r.Value, recs[i].Value) || (recs[i].Key == nil) != (r.Key == nil) {
			t.Fatalf("record %d: offset delta %d, key %q, value of %d bytes", n, r.OffsetDelta, r.Key, len(r.Value))
		}
		rest = rest[size:]
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the last record", len(rest))
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
