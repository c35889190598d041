package audit

import (
	"bytes"
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
