package logbroker

import (
	"os"
	"testing"
	"time"
)

// TestIndexWriteFailureKeepsOffsets: an append whose log write succeeds but
// whose index write fails (a full disk) is refused; the producer's retry and
// later batches must keep unique offsets and survive a restart.
func TestIndexWriteFailureKeepsOffsets(t *testing.T) {
	dir := t.TempDir()
	p := openFuzzPartition(t, dir)
	appendB := func(n int) appendResult {
		b := sampleBatch(t, n)
		batches, headers, err := splitBatches(b)
		if err != nil {
			t.Fatal(err)
		}
		return p.append(batches, headers, time.Now())
	}
	// Fill until the next batch starts a new index entry.
	for i := 0; i < 1000 && p.active().sinceIndex < indexIntervalBytes; i++ {
		if r := appendB(20); r.code != 0 {
			t.Fatalf("append %d: code %d", i, r.code)
		}
	}
	hw := p.hw
	s := p.active()
	good := s.indexFile
	ro, err := os.Open(good.Name())
	if err != nil {
		t.Fatal(err)
	}
	s.indexFile = ro // index writes fail from here on, as on a full disk
	if r := appendB(5); r.code == 0 {
		t.Fatal("append with a failing index write acknowledged")
	}
	s.indexFile = good
	ro.Close()
	if p.hw != hw {
		t.Fatalf("high watermark moved to %d on a refused append", p.hw)
	}
	// The producer retries; more follows.
	var acked []int64
	for i := 0; i < 3; i++ {
		r := appendB(5)
		if r.code != 0 {
			t.Fatalf("retry %d: code %d", i, r.code)
		}
		acked = append(acked, r.base)
	}
	t.Logf("acknowledged bases %v after a refused append at %d; hw %d, segment next %d", acked, hw, p.hw, s.next)
	check := func(p *partition, when string) {
		for _, base := range acked {
			res := p.read(base, 1, true)
			h, err := checkBatch(res.data)
			if res.code != 0 || err != nil || h.BaseOffset != base {
				t.Errorf("%s: read(%d): code %d, batch at %d, %v", when, base, res.code, h.BaseOffset, err)
			}
		}
		if p.hw != acked[len(acked)-1]+5 {
			t.Errorf("%s: high watermark %d, want %d", when, p.hw, acked[len(acked)-1]+5)
		}
	}
	check(p, "before restart")
	p.closeFiles()
	p2 := openFuzzPartition(t, dir)
	defer p2.closeFiles()
	check(p2, "after restart")
}
