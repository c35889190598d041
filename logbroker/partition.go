package logbroker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// producerHistory is how many recent batches per producer are remembered to
// answer retried duplicates, as Kafka's max.in.flight limit of 5 requires.
const producerHistory = 5

type seqEntry struct {
	first, last int32
	base        int64
}

// producerState is the idempotence state of one producer id on one
// partition.
type producerState struct {
	epoch  int16
	recent []seqEntry // oldest first, at most producerHistory
}

func (p *producerState) record(h batchHeader, base int64) {
	if len(p.recent) == producerHistory {
		copy(p.recent, p.recent[1:])
		p.recent = p.recent[:producerHistory-1]
	}
	p.recent = append(p.recent, seqEntry{first: h.BaseSequence, last: h.lastSequence(), base: base})
}

// partition is one partition's log: an ordered list of segments of which
// the last is the active one.
type partition struct {
	topic *topic
	id    int32
	dir   string
	sync  *syncer

	// filesMu is held for reading while segment files are read outside mu,
	// and for writing while segments are deleted or replaced.
	filesMu sync.RWMutex

	mu        sync.Mutex
	segments  []*segment
	logStart  int64
	hw        int64 // high watermark = next offset to assign
	producers map[int64]*producerState
	waiters   map[chan struct{}]struct{}
	// compactedBelow is the active segment's base at the last compaction:
	// compaction runs again only once more segments have closed.
	compactedBelow int64
}

func partitionDirName(topic string, id int32) string {
	return topic + "-" + strconv.Itoa(int(id))
}

// parsePartitionDir splits "<topic>-<partition>".
func parsePartitionDir(name string) (string, int32, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(name[i+1:], 10, 32)
	if err != nil || n < 0 || strconv.Itoa(int(n)) != name[i+1:] {
		return "", 0, false
	}
	return name[:i], int32(n), validTopicName(name[:i])
}

// openPartition opens or creates a partition directory and recovers it.
func openPartition(t *topic, id int32, dataDir string, y *syncer, log *slog.Logger) (*partition, error) {
	p := &partition{
		topic:     t,
		id:        id,
		dir:       filepath.Join(dataDir, partitionDirName(t.name, id)),
		sync:      y,
		producers: make(map[int64]*producerState),
		waiters:   make(map[chan struct{}]struct{}),
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, err
	}
	var bases []int64
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".cleaned") || strings.HasSuffix(name, ".tmp") {
			// A compaction that did not finish: the original is intact.
			os.Remove(filepath.Join(p.dir, name))
			continue
		}
		if !strings.HasSuffix(name, ".log") {
			continue
		}
		base, err := strconv.ParseInt(strings.TrimSuffix(name, ".log"), 10, 64)
		if err != nil || base < 0 {
			continue
		}
		bases = append(bases, base)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	for i, base := range bases {
		// The tail is verified batch by batch. A crash just after a roll
		// leaves an empty last segment, so the one before it is the
		// real tail then.
		verify := i == len(bases)-1 || (i == len(bases)-2 && segmentFileEmpty(p.dir, bases[i+1]))
		s, truncated, err := openSegment(p.dir, base, verify)
		if err != nil {
			p.closeFiles()
			return nil, fmt.Errorf("open segment %d of %s: %w", base, p.dir, err)
		}
		if truncated > 0 {
			log.Warn("truncated torn or corrupt tail of partition", "partition", filepath.Base(p.dir), "segment", base, "bytes", truncated)
		}
		p.segments = append(p.segments, s)
	}
	if len(p.segments) == 0 {
		s, err := createSegment(p.dir, 0, time.Now())
		if err != nil {
			return nil, err
		}
		p.segments = append(p.segments, s)
		syncDir(p.dir)
	}
	p.logStart = p.segments[0].base
	p.hw = p.active().next
	p.rebuildProducers()
	return p, nil
}

func segmentFileEmpty(dir string, base int64) bool {
	logPath, _, _ := segmentPaths(dir, base)
	fi, err := os.Stat(logPath)
	return err == nil && fi.Size() == 0
}

func (p *partition) active() *segment { return p.segments[len(p.segments)-1] }

// rebuildProducers restores idempotence state from the batch headers of the
// last two segments, enough to recognise the retries of any producer that
// was writing when the broker stopped.
func (p *partition) rebuildProducers() {
	from := len(p.segments) - 2
	if from < 0 {
		from = 0
	}
	hdr := make([]byte, batchHeaderLen)
	for _, s := range p.segments[from:] {
		for pos := int64(0); pos+batchHeaderLen <= s.size; {
			if _, err := s.log.ReadAt(hdr, pos); err != nil {
				break
			}
			h, err := parseBatchHeader(hdr)
			if err != nil {
				break
			}
			if h.ProducerID >= 0 {
				st := p.producers[h.ProducerID]
				if st == nil || h.ProducerEpoch > st.epoch {
					st = &producerState{epoch: h.ProducerEpoch}
					p.producers[h.ProducerID] = st
				}
				st.record(h, h.BaseOffset)
			}
			pos += h.size()
		}
	}
}

// appendResult says where a produce went.
type appendResult struct {
	base     int64
	logStart int64
	round    *syncRound
	code     int16
}

// append stores the batches of one produce request for this partition.
// Duplicate retries of an idempotent producer are acknowledged with their
// original offset without being stored again.
func (p *partition) append(batches [][]byte, headers []batchHeader, now time.Time) appendResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	res := appendResult{base: -1, logStart: p.logStart}
	for i, b := range batches {
		h := headers[i]
		if h.Attributes&(attrTransactional|attrControl) != 0 {
			res.code = kerr.InvalidRecord.Code
			return res
		}
		var st *producerState
		if h.ProducerID >= 0 {
			st = p.producers[h.ProducerID]
			switch {
			case st == nil:
				// Unknown producer (new, or its history was deleted):
				// accept whatever sequence it continues from.
				st = &producerState{epoch: h.ProducerEpoch}
			case h.ProducerEpoch < st.epoch:
				res.code = kerr.InvalidProducerEpoch.Code
				return res
			case h.ProducerEpoch > st.epoch:
				if h.BaseSequence != 0 {
					res.code = kerr.OutOfOrderSequenceNumber.Code
					return res
				}
				st = &producerState{epoch: h.ProducerEpoch}
			default:
				if dup, ok := st.duplicate(h); ok {
					if res.base < 0 {
						res.base = dup
					}
					continue
				}
				if n := len(st.recent); n > 0 && h.BaseSequence != seqAdd(st.recent[n-1].last, 1) {
					res.code = kerr.OutOfOrderSequenceNumber.Code
					return res
				}
			}
		}
		if err := p.maybeRoll(int64(len(b)), now); err != nil {
			p.topic.log.Error("segment roll failed", "partition", filepath.Base(p.dir), "err", err)
			res.code = kerr.KafkaStorageError.Code
			return res
		}
		base := p.hw
		h.BaseOffset = base
		setBatchBaseOffset(b, base)
		s := p.active()
		if err := s.appendBatch(b, h); err != nil {
			p.topic.log.Error("append failed", "partition", filepath.Base(p.dir), "err", err)
			res.code = kerr.KafkaStorageError.Code
			return res
		}
		p.hw = h.lastOffset() + 1
		if h.ProducerID >= 0 {
			st.record(h, base)
			p.producers[h.ProducerID] = st
		}
		if res.base < 0 {
			res.base = base
		}
		res.round = p.sync.markDirty(s)
	}
	for ch := range p.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return res
}

func (st *producerState) duplicate(h batchHeader) (int64, bool) {
	last := h.lastSequence()
	for _, e := range st.recent {
		if e.first == h.BaseSequence && e.last == last {
			return e.base, true
		}
	}
	return 0, false
}

// maybeRoll starts a new segment when the active one is full or old.
// Called with mu held.
func (p *partition) maybeRoll(incoming int64, now time.Time) error {
	s := p.active()
	settings := p.topic.settings()
	if s.size == 0 || (s.size+incoming <= settings.segmentBytes && now.Sub(s.created) < settings.segmentAge) {
		return nil
	}
	return p.roll(now)
}

func (p *partition) roll(now time.Time) error {
	s := p.active()
	if err := s.seal(); err != nil {
		return err
	}
	if p.sync.policy != FsyncOS {
		if err := s.sync(); err != nil {
			return err
		}
	}
	ns, err := createSegment(p.dir, p.hw, now)
	if err != nil {
		return err
	}
	p.segments = append(p.segments, ns)
	syncDir(p.dir)
	return nil
}

// fetchResult is one partition's answer to a fetch.
type fetchResult struct {
	data     []byte
	hw       int64
	logStart int64
	code     int16
}

// read returns whole batches starting with the one that contains offset,
// at most maxBytes of them. When atLeastOne is set and the first batch alone
// is larger, it is returned whole so that a consumer always makes progress.
func (p *partition) read(offset int64, maxBytes int32, atLeastOne bool) fetchResult {
	p.mu.Lock()
	res := fetchResult{hw: p.hw, logStart: p.logStart}
	if offset < p.logStart || offset > p.hw {
		p.mu.Unlock()
		res.code = kerr.OffsetOutOfRange.Code
		return res
	}
	if offset == p.hw || (maxBytes <= 0 && !atLeastOne) {
		p.mu.Unlock()
		return res
	}
	i := sort.Search(len(p.segments), func(i int) bool { return p.segments[i].base > offset }) - 1
	if i < 0 {
		i = 0
	}
	type view struct {
		s     *segment
		size  int64
		index []indexEntry
	}
	views := make([]view, 0, len(p.segments)-i)
	for _, s := range p.segments[i:] {
		views = append(views, view{s, s.size, s.index})
	}
	p.mu.Unlock()

	p.filesMu.RLock()
	defer p.filesMu.RUnlock()
	for _, v := range views {
		data, err := readFrom(v.s, v.size, v.index, offset, maxBytes, atLeastOne)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				// Deleted by retention between snapshot and read.
				res.code = kerr.OffsetOutOfRange.Code
				return res
			}
			p.topic.log.Error("read failed", "partition", filepath.Base(p.dir), "err", err)
			res.code = kerr.KafkaStorageError.Code
			return res
		}
		if data != nil { // possibly empty: the next batch did not fit
			res.data = data
			return res
		}
		// Nothing at or after offset here (compaction can leave gaps):
		// try the next segment.
	}
	return res
}

// readFrom reads whole batches of s (limited to size bytes) starting with
// the first batch whose last offset is >= offset. It returns nil when s has
// no such batch, and an empty slice when that batch exceeds maxBytes.
func readFrom(s *segment, size int64, index []indexEntry, offset int64, maxBytes int32, atLeastOne bool) ([]byte, error) {
	pos := positionFor(index, s.base, offset)
	var hdr [batchHeaderLen]byte
	for pos+batchHeaderLen <= size {
		if _, err := s.log.ReadAt(hdr[:], pos); err != nil {
			return nil, err
		}
		h, err := parseBatchHeader(hdr[:])
		if err != nil {
			return nil, fmt.Errorf("segment %s at %d: %w", s.logPath, pos, err)
		}
		if h.lastOffset() >= offset {
			break
		}
		pos += h.size()
	}
	if pos+batchHeaderLen > size {
		return nil, nil
	}
	n := size - pos
	if n > int64(maxBytes) {
		n = int64(maxBytes)
	}
	if n < batchHeaderLen {
		n = batchHeaderLen
	}
	buf := make([]byte, n)
	if _, err := s.log.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// Keep only whole batches.
	end := int64(0)
	for end+batchHeaderLen <= n {
		h, err := parseBatchHeader(buf[end:])
		if err != nil {
			return nil, fmt.Errorf("segment %s at %d: %w", s.logPath, pos+end, err)
		}
		if end+h.size() > n {
			if end == 0 && atLeastOne {
				// The first batch is larger than maxBytes: send it whole,
				// if the file holds it (a damaged index could point into a
				// batch and make a length of garbage).
				if pos+h.size() > size {
					return nil, fmt.Errorf("segment %s at %d: batch of %d bytes runs past the end of the log", s.logPath, pos, h.size())
				}
				whole := make([]byte, h.size())
				if _, err := s.log.ReadAt(whole, pos); err != nil {
					return nil, err
				}
				return whole, nil
			}
			break
		}
		end += h.size()
	}
	return buf[:end], nil
}

// offsetForTime returns the base offset of the first batch holding a
// record with timestamp >= ts, or the high watermark when there is none.
// It answers at batch granularity: a consumer may see a few earlier records
// of that batch.
func (p *partition) offsetForTime(ts int64) (int64, int64, error) {
	p.mu.Lock()
	type view struct {
		s     *segment
		size  int64
		maxTS int64
	}
	var views []view
	for _, s := range p.segments {
		views = append(views, view{s, s.size, s.maxTS})
	}
	hw := p.hw
	p.mu.Unlock()
	p.filesMu.RLock()
	defer p.filesMu.RUnlock()
	var hdr [batchHeaderLen]byte
	for _, v := range views {
		if v.maxTS < ts {
			continue
		}
		for pos := int64(0); pos+batchHeaderLen <= v.size; {
			if _, err := v.s.log.ReadAt(hdr[:], pos); err != nil {
				return 0, 0, err
			}
			h, err := parseBatchHeader(hdr[:])
			if err != nil {
				return 0, 0, err
			}
			if h.MaxTimestamp >= ts {
				return h.BaseOffset, h.MaxTimestamp, nil
			}
			pos += h.size()
		}
	}
	return hw, -1, nil
}

// addWaiter registers ch to receive a non-blocking send on every append.
func (p *partition) addWaiter(ch chan struct{}) {
	p.mu.Lock()
	p.waiters[ch] = struct{}{}
	p.mu.Unlock()
}

func (p *partition) removeWaiter(ch chan struct{}) {
	p.mu.Lock()
	delete(p.waiters, ch)
	p.mu.Unlock()
}

// PartitionStats describes one partition for metrics.
type PartitionStats struct {
	Topic          string
	Partition      int32
	LogStartOffset int64
	HighWatermark  int64
	Bytes          int64 // on-disk size of all segments' log files
	Segments       int
}

func (p *partition) stats() PartitionStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PartitionStats{Topic: p.topic.name, Partition: p.id, LogStartOffset: p.logStart, HighWatermark: p.hw, Segments: len(p.segments)}
	for _, s := range p.segments {
		st.Bytes += s.size
	}
	return st
}

// enforceRetention deletes closed segments that are entirely older than
// the retention time, then the oldest closed ones while the partition is
// above its size limit.
func (p *partition) enforceRetention(now time.Time) int {
	settings := p.topic.settings()
	p.filesMu.Lock()
	defer p.filesMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	var total int64
	for _, s := range p.segments {
		total += s.size
	}
	deleted := 0
	for len(p.segments) > 1 {
		s := p.segments[0]
		expired := settings.retention > 0 && s.maxTS >= 0 && now.Sub(time.UnixMilli(s.maxTS)) > settings.retention
		// A segment with no timestamps at all is empty: drop it too.
		expired = expired || s.size == 0
		oversize := settings.retentionBytes > 0 && total-s.size >= settings.retentionBytes
		if !expired && !oversize {
			break
		}
		if err := s.remove(); err != nil {
			p.topic.log.Warn("delete segment", "path", s.logPath, "err", err)
		}
		total -= s.size
		p.segments = p.segments[1:]
		deleted++
	}
	if deleted > 0 {
		p.logStart = p.segments[0].base
		if p.logStart > p.hw {
			p.logStart = p.hw
		}
	}
	return deleted
}

func (p *partition) closeFiles() error {
	var errs []error
	for _, s := range p.segments {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}

// syncDir makes a directory's entries (new or renamed files) durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
