package digest

import (
	"testing"
	"time"
)

func TestDigestsBoundedAndOrdered(t *testing.T) {
	d := New(3)
	now := time.Now()
	for i := range 100 {
		d.Record(1, "SELECT ?", now, time.Duration(i+1)*time.Millisecond, 1, false)
	}
	d.Record(2, "UPDATE t SET a = ?", now, 5*time.Second, 0, true)
	d.Record(3, "DELETE FROM t", now, time.Millisecond, 0, false)
	d.Record(4, "INSERT INTO t VALUES (?)", now, time.Millisecond, 0, false) // evicts the least recently seen: 1
	if d.Len() != 3 || d.Evicted() != 1 {
		t.Fatalf("len %d evicted %d, want 3 and 1", d.Len(), d.Evicted())
	}
	top := d.Top(0, "total")
	if top[0].Fingerprint != "UPDATE t SET a = ?" || top[0].Errors != 1 || top[0].DigestHex != "2" {
		t.Fatalf("top by total: %+v", top[0])
	}
	d.Record(1, "SELECT ?", now, time.Millisecond, 1, false)
	for i := range 99 {
		d.Record(1, "SELECT ?", now, time.Duration(i+1)*time.Millisecond, 1, false)
	}
	top = d.Top(1, "count")
	s := top[0]
	if s.Count != 100 || s.MinUS != 1000 || s.MaxUS != 99000 || s.Rows != 100 {
		t.Fatalf("stats: %+v", s)
	}
	// p99 of 1..99 ms (and one 1 ms) is 99 ms, known within a factor of √2.
	if s.P99US < 99000/2 || s.P99US > 99000 {
		t.Fatalf("p99 %d µs, want about 99000", s.P99US)
	}
	if len(d.Top(2, "max")) != 2 {
		t.Fatal("limit")
	}
	var nilD *Table
	nilD.Record(1, "x", now, time.Second, 0, false)
	if nilD.Len() != 0 || len(nilD.Top(10, "")) != 0 {
		t.Fatal("nil Table must record nothing")
	}
}

func TestLatencyBucket(t *testing.T) {
	prev := -1
	for us := int64(0); us < 1<<20; us = us*5/4 + 1 {
		b := latencyBucket(us)
		if b < prev {
			t.Fatalf("bucket of %d µs is %d, below %d", us, b, prev)
		}
		if us > 0 && bucketUpperUS(b) < us {
			t.Fatalf("%d µs in bucket %d whose upper bound is %d", us, b, bucketUpperUS(b))
		}
		prev = b
	}
}

func BenchmarkDigestsRecord(b *testing.B) {
	d := New(1000)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.Record(uint64(i%500), "SELECT c FROM sbtest1 WHERE id = ?", now, 300*time.Microsecond, 1, false)
	}
}
