package logbroker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// indexIntervalBytes is how much log data may lie between two sparse index
// entries, as Kafka's index.interval.bytes. A fetch scans at most this much
// from the indexed position to the requested batch.
const indexIntervalBytes = 4096

// indexEntry maps an offset (relative to the segment's base) to the file
// position of the batch that starts there. On disk: int32 rel, int32 pos.
type indexEntry struct {
	rel int32
	pos int32
}

// timeIndexEntry records that no batch before offset base+rel has a
// timestamp above ts. On disk: int64 ts, int32 rel.
type timeIndexEntry struct {
	ts  int64
	rel int32
}

// segment is one <base>.log file with its .index and .timeindex. Mutable
// fields are guarded by the owning partition's mu; the file contents below
// size are immutable until the segment is deleted or replaced by compaction.
type segment struct {
	base      int64
	logPath   string
	log       *os.File
	indexFile *os.File
	timeFile  *os.File

	size       int64 // bytes of complete batches
	next       int64 // offset after the last batch
	maxTS      int64 // largest batch max timestamp, -1 if empty
	created    time.Time
	index      []indexEntry
	timeIndex  []timeIndexEntry
	sinceIndex int64 // bytes appended since the last index entry
}

func segmentPaths(dir string, base int64) (logPath, indexPath, timePath string) {
	name := fmt.Sprintf("%020d", base)
	return filepath.Join(dir, name+".log"), filepath.Join(dir, name+".index"), filepath.Join(dir, name+".timeindex")
}

// createSegment makes a new empty segment, replacing any leftover files.
func createSegment(dir string, base int64, now time.Time) (*segment, error) {
	logPath, indexPath, timePath := segmentPaths(dir, base)
	s := &segment{base: base, logPath: logPath, next: base, maxTS: -1, created: now}
	var err error
	if s.log, err = os.OpenFile(logPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		return nil, err
	}
	if s.indexFile, err = os.OpenFile(indexPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		s.close()
		return nil, err
	}
	if s.timeFile, err = os.OpenFile(timePath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// openSegment opens an existing segment. The last segment of a partition
// (verifyAll) is read whole: every batch's CRC is checked and the file is
// truncated at the first torn or corrupt batch, and its indexes are rebuilt.
// Closed segments trust their data and load their indexes, rebuilding them
// from batch headers only if they are missing or inconsistent.
func openSegment(dir string, base int64, verifyAll bool) (s *segment, truncated int64, err error) {
	logPath, indexPath, timePath := segmentPaths(dir, base)
	s = &segment{base: base, logPath: logPath, next: base, maxTS: -1}
	if s.log, err = os.OpenFile(logPath, os.O_RDWR, 0o644); err != nil {
		return nil, 0, err
	}
	if s.indexFile, err = os.OpenFile(indexPath, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		s.close()
		return nil, 0, err
	}
	if s.timeFile, err = os.OpenFile(timePath, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		s.close()
		return nil, 0, err
	}
	st, err := s.log.Stat()
	if err != nil {
		s.close()
		return nil, 0, err
	}
	s.created = st.ModTime()
	if verifyAll {
		truncated, err = s.recoverTail(st.Size())
	} else if !s.loadIndexes(st.Size()) {
		err = s.rebuildFromHeaders(st.Size())
	}
	if err != nil {
		s.close()
		return nil, 0, err
	}
	return s, truncated, nil
}

// recoverTail checks every batch of the file, truncates after the last good
// one and rewrites both indexes.
func (s *segment) recoverTail(fileSize int64) (truncated int64, err error) {
	r := bufio.NewReaderSize(io.NewSectionReader(s.log, 0, fileSize), 1<<20)
	var buf []byte
	var pos int64
	s.resetIndexes()
	for {
		hdr, err := r.Peek(batchHeaderLen)
		if err != nil {
			break // EOF or a torn header
		}
		h, err := parseBatchHeader(hdr)
		if err != nil || h.size() > fileSize-pos || h.BaseOffset < s.next {
			break
		}
		if int64(cap(buf)) < h.size() {
			buf = make([]byte, h.size())
		}
		buf = buf[:h.size()]
		if _, err := io.ReadFull(r, buf); err != nil {
			break
		}
		if _, err := checkBatch(buf); err != nil {
			break
		}
		s.noteBatch(h, pos)
		pos += h.size()
	}
	if pos < fileSize {
		if err := s.log.Truncate(pos); err != nil {
			return 0, err
		}
	}
	if err := s.writeIndexes(); err != nil {
		return 0, err
	}
	return fileSize - pos, nil
}

// rebuildFromHeaders walks the batch headers of a closed segment.
func (s *segment) rebuildFromHeaders(fileSize int64) error {
	s.resetIndexes()
	hdr := make([]byte, batchHeaderLen)
	var pos int64
	for pos+batchHeaderLen <= fileSize {
		if _, err := s.log.ReadAt(hdr, pos); err != nil {
			return err
		}
		h, err := parseBatchHeader(hdr)
		if err != nil || h.size() > fileSize-pos {
			break
		}
		s.noteBatch(h, pos)
		pos += h.size()
	}
	return s.writeIndexes()
}

func (s *segment) resetIndexes() {
	s.size, s.next, s.maxTS, s.sinceIndex = 0, s.base, -1, 0
	s.index, s.timeIndex = nil, nil
}

// noteBatch accounts for the batch h stored at pos in memory only.
func (s *segment) noteBatch(h batchHeader, pos int64) (newIndex, newTime bool) {
	if s.size == 0 || s.sinceIndex >= indexIntervalBytes {
		s.index = append(s.index, indexEntry{rel: int32(h.BaseOffset - s.base), pos: int32(pos)})
		s.sinceIndex = 0
		newIndex = true
	}
	s.sinceIndex += h.size()
	if h.MaxTimestamp > s.maxTS {
		s.maxTS = h.MaxTimestamp
		if newIndex {
			s.timeIndex = append(s.timeIndex, timeIndexEntry{ts: h.MaxTimestamp, rel: int32(h.lastOffset() - s.base)})
			newTime = true
		}
	}
	s.size = pos + h.size()
	s.next = h.lastOffset() + 1
	return newIndex, newTime
}

func encodeIndexEntry(e indexEntry) []byte {
	var b [8]byte
	binary.BigEndian.PutUint32(b[0:], uint32(e.rel))
	binary.BigEndian.PutUint32(b[4:], uint32(e.pos))
	return b[:]
}

func encodeTimeEntry(e timeIndexEntry) []byte {
	var b [12]byte
	binary.BigEndian.PutUint64(b[0:], uint64(e.ts))
	binary.BigEndian.PutUint32(b[8:], uint32(e.rel))
	return b[:]
}

// writeIndexes rewrites both index files from memory.
func (s *segment) writeIndexes() error {
	ib := make([]byte, 0, 8*len(s.index))
	for _, e := range s.index {
		ib = append(ib, encodeIndexEntry(e)...)
	}
	tb := make([]byte, 0, 12*(len(s.timeIndex)+1))
	for _, e := range s.timeIndex {
		tb = append(tb, encodeTimeEntry(e)...)
	}
	if err := rewriteFile(s.indexFile, ib); err != nil {
		return err
	}
	return rewriteFile(s.timeFile, tb)
}

func rewriteFile(f *os.File, b []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt(b, 0)
	return err
}

// loadIndexes reads the index files of a closed segment and reports whether
// they are consistent with the log file.
func (s *segment) loadIndexes(fileSize int64) bool {
	ib, err := io.ReadAll(io.NewSectionReader(s.indexFile, 0, 1<<31))
	if err != nil || len(ib)%8 != 0 || (len(ib) == 0 && fileSize > 0) {
		return false
	}
	tb, err := io.ReadAll(io.NewSectionReader(s.timeFile, 0, 1<<31))
	if err != nil || len(tb)%12 != 0 {
		return false
	}
	s.index = s.index[:0]
	for i := 0; i < len(ib); i += 8 {
		e := indexEntry{rel: int32(binary.BigEndian.Uint32(ib[i:])), pos: int32(binary.BigEndian.Uint32(ib[i+4:]))}
		if e.pos < 0 || int64(e.pos) >= fileSize || e.rel < 0 {
			return false
		}
		if n := len(s.index); n > 0 && (e.rel <= s.index[n-1].rel || e.pos <= s.index[n-1].pos) {
			return false
		}
		s.index = append(s.index, e)
	}
	s.timeIndex = s.timeIndex[:0]
	for i := 0; i < len(tb); i += 12 {
		s.timeIndex = append(s.timeIndex, timeIndexEntry{ts: int64(binary.BigEndian.Uint64(tb[i:])), rel: int32(binary.BigEndian.Uint32(tb[i+8:]))})
	}
	s.size = fileSize
	if fileSize == 0 {
		return true
	}
	// The last indexed batch must start where the index says; walking
	// from it gives the segment's end offset.
	last := s.index[len(s.index)-1]
	pos := int64(last.pos)
	hdr := make([]byte, batchHeaderLen)
	for pos < fileSize {
		if _, err := s.log.ReadAt(hdr, pos); err != nil {
			return false
		}
		h, err := parseBatchHeader(hdr)
		if err != nil || h.size() > fileSize-pos {
			return false
		}
		if pos == int64(last.pos) && h.BaseOffset != s.base+int64(last.rel) {
			return false
		}
		if h.MaxTimestamp > s.maxTS {
			s.maxTS = h.MaxTimestamp
		}
		s.next = h.lastOffset() + 1
		pos += h.size()
	}
	for _, e := range s.timeIndex {
		if e.ts > s.maxTS {
			s.maxTS = e.ts
		}
	}
	if s.maxTS >= 0 {
		s.created = time.UnixMilli(s.maxTS)
	}
	s.sinceIndex = fileSize - int64(last.pos)
	return true
}

// appendBatch writes one batch (its offsets already assigned) at the end.
func (s *segment) appendBatch(b []byte, h batchHeader) error {
	pos := s.size
	if _, err := s.log.WriteAt(b, pos); err != nil {
		// Leave no partial batch behind for a later append to follow.
		_ = s.log.Truncate(pos)
		return err
	}
	// An index write can fail (a full disk) after the log took the batch:
	// then the batch is undone, in the file and in memory, so the retry
	// gets the same offsets and nothing unacknowledged stays readable.
	before := struct {
		size, next, maxTS, sinceIndex int64
		index, timeIndex              int
	}{s.size, s.next, s.maxTS, s.sinceIndex, len(s.index), len(s.timeIndex)}
	undo := func(err error) error {
		s.size, s.next, s.maxTS, s.sinceIndex = before.size, before.next, before.maxTS, before.sinceIndex
		s.index, s.timeIndex = s.index[:before.index], s.timeIndex[:before.timeIndex]
		_ = s.log.Truncate(pos)
		return err
	}
	newIndex, newTime := s.noteBatch(h, pos)
	if newIndex {
		if _, err := s.indexFile.WriteAt(encodeIndexEntry(s.index[len(s.index)-1]), int64(8*(len(s.index)-1))); err != nil {
			return undo(err)
		}
	}
	if newTime {
		if _, err := s.timeFile.WriteAt(encodeTimeEntry(s.timeIndex[len(s.timeIndex)-1]), int64(12*(len(s.timeIndex)-1))); err != nil {
			return undo(err)
		}
	}
	return nil
}

// seal records the final max timestamp in the time index when the segment
// stops being the active one.
func (s *segment) seal() error {
	if s.maxTS < 0 || s.size == 0 {
		return nil
	}
	if n := len(s.timeIndex); n > 0 && s.timeIndex[n-1].ts == s.maxTS {
		return nil
	}
	e := timeIndexEntry{ts: s.maxTS, rel: int32(s.next - 1 - s.base)}
	s.timeIndex = append(s.timeIndex, e)
	_, err := s.timeFile.WriteAt(encodeTimeEntry(e), int64(12*(len(s.timeIndex)-1)))
	return err
}

// positionFor returns the file position of the last indexed batch whose
// base offset is <= offset: a fetch scans forward from there.
func positionFor(index []indexEntry, base, offset int64) int64 {
	rel := offset - base
	i := sort.Search(len(index), func(i int) bool { return int64(index[i].rel) > rel })
	if i == 0 {
		return 0
	}
	return int64(index[i-1].pos)
}

// syncLog flushes the log file only: what group commits need for the active
// segment, whose indexes recovery rebuilds from the log (see openSegment).
// A roll syncs all three files before the segment is closed.
func (s *segment) syncLog() error { return s.log.Sync() }

func (s *segment) sync() error {
	err := s.log.Sync()
	if err2 := s.indexFile.Sync(); err == nil {
		err = err2
	}
	if err2 := s.timeFile.Sync(); err == nil {
		err = err2
	}
	return err
}

func (s *segment) close() error {
	var errs []error
	for _, f := range []*os.File{s.log, s.indexFile, s.timeFile} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

func (s *segment) remove() error {
	s.close()
	logPath, indexPath, timePath := segmentPaths(filepath.Dir(s.logPath), s.base)
	var errs []error
	for _, p := range []string{logPath, indexPath, timePath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
