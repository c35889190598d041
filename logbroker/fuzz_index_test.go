package logbroker

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// indexFixture is a partition on disk whose first segment is closed (so its
// offset and time indexes are loaded from their files at open, not rebuilt
// from the log), with what every batch of it holds.
type indexFixture struct {
	dir     string // the data dir: <dir>/t-0/...
	hw      int64
	batches []fixtureBatch // every batch of the partition, in order
	seg0    int            // batches[:seg0] are in the first segment
	index   []byte         // the first segment's index file as written
	times   []byte         // and its time index
}

type fixtureBatch struct {
	base, last, ts int64
	data           []byte
}

func newIndexFixture(tb testing.TB) *indexFixture {
	fx := &indexFixture{dir: tb.TempDir()}
	p := openFuzzPartition(tb, fx.dir)
	recs := func(n int) []byte { return sampleBatch(tb, n)[batchHeaderLen:] }
	ts := time.Now().Add(-time.Hour).UnixMilli()
	for i := 0; i < 120; i++ {
		n := 1 + (i*7)%59
		b := buildBatch(n, recs(n), ts+int64(i)*1000, -1, -1, -1)
		batches, headers, err := splitBatches(b)
		if err != nil {
			tb.Fatal(err)
		}
		if r := p.append(batches, headers, time.Now()); r.code != 0 {
			tb.Fatalf("append %d: code %d", i, r.code)
		}
	}
	fx.hw = p.hw
	if len(p.segments) < 3 || len(p.segments[0].index) < 3 {
		tb.Fatalf("fixture: %d segments, %d index entries in the first; want several of each", len(p.segments), len(p.segments[0].index))
	}
	for si, s := range p.segments {
		data, err := os.ReadFile(s.logPath)
		if err != nil {
			tb.Fatal(err)
		}
		_, headers, err := splitBatches(data)
		if err != nil {
			tb.Fatal(err)
		}
		pos := int64(0)
		for _, h := range headers {
			fx.batches = append(fx.batches, fixtureBatch{base: h.BaseOffset, last: h.lastOffset(), ts: h.MaxTimestamp,
				data: data[pos : pos+h.size()]})
			pos += h.size()
		}
		if si == 0 {
			fx.seg0 = len(fx.batches)
		}
	}
	if err := p.closeFiles(); err != nil {
		tb.Fatal(err)
	}
	_, indexPath, timePath := segmentPaths(filepath.Join(fx.dir, "t-0"), 0)
	var err error
	if fx.index, err = os.ReadFile(indexPath); err != nil {
		tb.Fatal(err)
	}
	if fx.times, err = os.ReadFile(timePath); err != nil {
		tb.Fatal(err)
	}
	return fx
}

// openFuzzPartition opens partition 0 of topic "t" under dir, with small
// segments so that a few dozen batches fill several.
func openFuzzPartition(tb testing.TB, dir string) *partition {
	tb.Helper()
	cfg := Config{DataDir: dir, SegmentBytes: 16 << 10}.WithDefaults()
	settings, err := resolveSettings(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tp := &topic{name: "t", log: slog.New(slog.DiscardHandler)}
	tp.current.Store(&settings)
	p, err := openPartition(tp, 0, dir, newSyncer(FsyncOS, time.Second), tp.log)
	if err != nil {
		tb.Fatalf("open partition: %v", err)
	}
	return p
}

// FuzzSegmentIndexes damages the offset index and time index files of a
// closed segment and reopens the partition. The offset index gets what a
// crash can leave of it: cut at any byte (a write that did not finish),
// then zero-filled for a while (a size that reached the disk before the
// data); the time index gets arbitrary bytes. Opening must not fail or
// panic, nothing may be lost (the high watermark stays), every read must
// serve exactly the batch holding the requested offset, and time lookups
// must find the right batch.
//
// Arbitrary bytes in the offset index are not fuzzed: an entry that passes
// the open-time checks but points inside a batch makes reads of its range
// fail, each allocating what the garbage "batch length" there says (up to
// 2 GiB). See docs/reliability.md.
func FuzzSegmentIndexes(f *testing.F) {
	fx := newIndexFixture(f)
	n := uint16(len(fx.index))
	f.Add(n, uint16(0), fx.times)
	f.Add(uint16(0), uint16(0), []byte{})
	f.Add(n-8, uint16(0), fx.times)
	f.Add(n-3, uint16(5), fx.times[:5])
	f.Add(uint16(0), n, make([]byte, len(fx.times)))
	f.Add(n, uint16(8), fx.times)
	f.Add(n/2, uint16(16), fx.times)
	future := bytes.Clone(fx.times)
	if len(future) >= 12 {
		future[0] = 0x7f
	}
	f.Add(n, uint16(0), future)

	f.Fuzz(func(t *testing.T, cut, zeros uint16, times []byte) {
		index := append(bytes.Clone(fx.index[:int(cut)%(len(fx.index)+1)]), make([]byte, int(zeros)%256)...)
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(fx.dir)); err != nil {
			t.Fatal(err)
		}
		_, indexPath, timePath := segmentPaths(filepath.Join(dir, "t-0"), 0)
		if err := os.WriteFile(indexPath, index, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(timePath, times, 0o644); err != nil {
			t.Fatal(err)
		}
		p := openFuzzPartition(t, dir)
		defer p.closeFiles()
		if p.hw != fx.hw || p.logStart != 0 {
			t.Fatalf("high watermark %d, log start %d after reopening; want %d, 0", p.hw, p.logStart, fx.hw)
		}
		for i, b := range fx.batches {
			if i > fx.seg0+2 {
				break // later segments' indexes were not touched
			}
			for _, off := range []int64{b.base, b.last} {
				res := p.read(off, 1, true)
				if res.code != 0 || !bytes.Equal(res.data, b.data) {
					got := "nothing"
					if h, err := checkBatch(res.data); err == nil {
						got = "batch " + strconv.FormatInt(h.BaseOffset, 10) + "-" + strconv.FormatInt(h.lastOffset(), 10)
					}
					t.Fatalf("read(%d): code %d, %s (%d bytes); want batch %d-%d (%d bytes)", off, res.code, got, len(res.data), b.base, b.last, len(b.data))
				}
			}
			off, ts, err := p.offsetForTime(b.ts)
			if err != nil || off != b.base || ts != b.ts {
				t.Fatalf("offset for time %d: %d (ts %d, %v); want %d", b.ts, off, ts, err, b.base)
			}
		}
	})
}
