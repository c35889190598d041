// Package digest keeps the statement digest table: statistics per statement
// shape for `sluice ctl digests` and GET /v1/digests.
package digest

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2/simplelru"
)

// Table keeps statistics per statement shape (fingerprint) in bounded
// memory: at most a configured number of shapes, the least recently seen
// evicted first. ProxySQL's digest table grows without bound; this one
// does not. The zero value and nil record nothing.
type Table struct {
	mu      sync.Mutex
	entries *lru.LRU[uint64, *entry]
	evicted uint64
}

// latencyBuckets are log-spaced by a factor of √2 from 1 µs: bucket i holds
// durations below 2^((i+1)/2) µs, so a percentile is known within √2.
const latencyBuckets = 64

type entry struct {
	Stats
	hist [latencyBuckets]uint32
}

// Stats is what is known of one statement shape.
type Stats struct {
	Digest      uint64    `json:"-"`
	DigestHex   string    `json:"digest"`
	Fingerprint string    `json:"fingerprint"`
	Count       uint64    `json:"count"`
	TotalUS     int64     `json:"total_us"`
	MinUS       int64     `json:"min_us"`
	MaxUS       int64     `json:"max_us"`
	AvgUS       int64     `json:"avg_us"`
	P99US       int64     `json:"p99_us"`
	Rows        int64     `json:"rows"`
	Errors      uint64    `json:"errors"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
}

// New keeps at most size shapes; size 0 or less records nothing.
func New(size int) *Table {
	if size <= 0 {
		return nil
	}
	l, _ := lru.NewLRU[uint64, *entry](size, nil)
	return &Table{entries: l}
}

// Record adds one answered statement.
func (d *Table) Record(digest uint64, fingerprint string, at time.Time, took time.Duration, rows int64, failed bool) {
	if d == nil {
		return
	}
	us := took.Microseconds()
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.entries.Get(digest)
	if !ok || e.Fingerprint != fingerprint {
		e = &entry{Stats: Stats{Digest: digest, Fingerprint: fingerprint, MinUS: math.MaxInt64, FirstSeen: at}}
		if d.entries.Add(digest, e) {
			d.evicted++
		}
	}
	e.Count++
	e.TotalUS += us
	e.MinUS = min(e.MinUS, us)
	e.MaxUS = max(e.MaxUS, us)
	e.Rows += rows
	if failed {
		e.Errors++
	}
	e.LastSeen = at
	e.hist[latencyBucket(us)]++
}

// latencyBucket is the histogram bucket of a duration in microseconds.
func latencyBucket(us int64) int {
	if us < 1 {
		return 0
	}
	// 2*log2(us), using the bit length and whether us is past the √2 point.
	n := bits.Len64(uint64(us)) - 1
	b := 2 * n
	if float64(us) >= math.Sqrt2*float64(uint64(1)<<n) {
		b++
	}
	return min(b, latencyBuckets-1)
}

// bucketUpperUS is the upper bound of bucket i in microseconds.
func bucketUpperUS(i int) int64 {
	return int64(math.Ceil(math.Pow(math.Sqrt2, float64(i+1))))
}

// Len is the number of shapes kept now.
func (d *Table) Len() int {
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.entries.Len()
}

// Evicted counts shapes dropped to stay within the limit.
func (d *Table) Evicted() uint64 {
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.evicted
}

// Top returns up to limit shapes ordered by sort: "total" (time, the
// default), "count", "max", "p99" or "errors".
func (d *Table) Top(limit int, sort string) []Stats {
	if d == nil {
		return []Stats{}
	}
	d.mu.Lock()
	out := make([]Stats, 0, d.entries.Len())
	for _, e := range d.entries.Values() {
		st := e.Stats
		st.AvgUS = st.TotalUS / int64(max(st.Count, 1))
		st.P99US = min(percentile(&e.hist, st.Count, 0.99), st.MaxUS)
		st.DigestHex = strconv.FormatUint(st.Digest, 16) // as in the query log
		out = append(out, st)
	}
	d.mu.Unlock()
	key := func(s Stats) int64 {
		switch sort {
		case "count":
			return int64(s.Count)
		case "max":
			return s.MaxUS
		case "p99":
			return s.P99US
		case "errors":
			return int64(s.Errors)
		}
		return s.TotalUS
	}
	slices.SortFunc(out, func(a, b Stats) int { return cmp.Compare(key(b), key(a)) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

func percentile(hist *[latencyBuckets]uint32, count uint64, q float64) int64 {
	want := uint64(math.Ceil(q * float64(count)))
	var seen uint64
	for i, n := range hist {
		seen += uint64(n)
		if seen >= want && n > 0 {
			return bucketUpperUS(i)
		}
	}
	return 0
}
