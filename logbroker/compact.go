package logbroker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// Compaction keeps, in the closed segments of a topic with
// cleanup.policy=compact, only the latest record of each key.
//
// Honest limits:
//   - Only uncompressed batches are compacted. A compressed batch is kept
//     whole and its keys do not count as "later" versions, because
//     recompressing would need every codec the producers may use. Producers
//     to compacted topics should therefore not compress (Sluice's own
//     producer does not for keyed topics).
//   - The key map covers the closed segments only: a key rewritten in the
//     active segment is compacted once that segment rolls.
//   - Tombstones (null values) are kept, not expired after
//     delete.retention.ms.
//   - The partition's reads are blocked while it is compacted.

// recordKey is one record's offset and key as found in a batch.
type recordKey struct {
	offset int64
	key    []byte // nil for a null key
	start  int    // position of the record (its length varint) in the batch
	end    int
}

var errRecord = errors.New("malformed record")

// decodeRecordKeys lists the records of an uncompressed batch.
func decodeRecordKeys(batch []byte, h batchHeader) ([]recordKey, error) {
	out := make([]recordKey, 0, h.NumRecords)
	b := batch[batchHeaderLen:]
	pos := batchHeaderLen
	for i := int32(0); i < h.NumRecords; i++ {
		length, n := binary.Varint(b)
		if n <= 0 || length < 0 || int64(len(b)-n) < length {
			return nil, errRecord
		}
		rec := b[n : n+int(length)]
		r := recordKey{start: pos, end: pos + n + int(length)}
		if len(rec) < 1 {
			return nil, errRecord
		}
		rest := rec[1:]                          // attributes
		if _, m := binary.Varint(rest); m <= 0 { // timestamp delta
			return nil, errRecord
		} else {
			rest = rest[m:]
		}
		offDelta, m := binary.Varint(rest)
		if m <= 0 {
			return nil, errRecord
		}
		rest = rest[m:]
		keyLen, m := binary.Varint(rest)
		if m <= 0 || keyLen > int64(len(rest)-m) {
			return nil, errRecord
		}
		rest = rest[m:]
		if keyLen >= 0 {
			r.key = rest[:keyLen]
		}
		r.offset = h.BaseOffset + offDelta
		out = append(out, r)
		b = b[n+int(length):]
		pos = r.end
	}
	return out, nil
}

// compact rewrites the closed segments of p without superseded records.
func (p *partition) compact() error {
	p.filesMu.Lock()
	defer p.filesMu.Unlock()
	p.mu.Lock()
	closed := append([]*segment(nil), p.segments[:len(p.segments)-1]...)
	activeBase := p.active().base
	p.mu.Unlock()
	if len(closed) == 0 || activeBase == p.compactedBelow {
		return nil
	}
	latest := make(map[string]int64)
	for _, s := range closed {
		err := forEachBatch(s, func(batch []byte, h batchHeader) error {
			if h.Attributes&attrCompression != 0 {
				return nil
			}
			recs, err := decodeRecordKeys(batch, h)
			if err != nil {
				return err
			}
			for _, r := range recs {
				if r.key != nil {
					latest[string(r.key)] = r.offset
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("scan %s: %w", s.logPath, err)
		}
	}
	for i, s := range closed {
		ns, err := p.compactSegment(s, latest)
		if err != nil {
			return err
		}
		if ns == nil {
			continue
		}
		p.mu.Lock()
		for j, cur := range p.segments {
			if cur == s {
				p.segments[j] = ns
			}
		}
		p.mu.Unlock()
		closed[i] = ns
	}
	p.compactedBelow = activeBase
	return nil
}

// compactSegment writes s without superseded records and swaps the result
// in, returning the new segment, or nil when nothing was removed.
func (p *partition) compactSegment(s *segment, latest map[string]int64) (*segment, error) {
	cleanedPath := s.logPath + ".cleaned"
	out, err := os.OpenFile(cleanedPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer os.Remove(cleanedPath) // no-op once renamed
	changed := false
	var buf []byte
	err = forEachBatch(s, func(batch []byte, h batchHeader) error {
		keep := batch
		if h.Attributes&attrCompression == 0 {
			recs, err := decodeRecordKeys(batch, h)
			if err != nil {
				return err
			}
			buf = append(buf[:0], batch[:batchHeaderLen]...)
			n := int32(0)
			for _, r := range recs {
				if r.key == nil || latest[string(r.key)] == r.offset {
					buf = append(buf, batch[r.start:r.end]...)
					n++
				}
			}
			switch {
			case n == 0:
				changed = true
				return nil
			case n < h.NumRecords:
				changed = true
				binary.BigEndian.PutUint32(buf[batchOffLength:], uint32(len(buf)-batchLengthPrefix))
				binary.BigEndian.PutUint32(buf[batchOffNumRecords:], uint32(n))
				binary.BigEndian.PutUint32(buf[batchOffCRC:], crc32.Checksum(buf[batchOffAttributes:], castagnoli))
				keep = buf
			}
		}
		_, err := out.Write(keep)
		return err
	})
	if err == nil && changed {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil || !changed {
		return nil, err
	}
	// Swap: the rename is atomic, and indexes are rebuilt from the new
	// file on open.
	s.close()
	if err := os.Rename(cleanedPath, s.logPath); err != nil {
		return nil, err
	}
	_, indexPath, timePath := segmentPaths(p.dir, s.base)
	os.Remove(indexPath)
	os.Remove(timePath)
	syncDir(p.dir)
	ns, _, err := openSegment(p.dir, s.base, false)
	if err != nil {
		return nil, err
	}
	return ns, nil
}

// forEachBatch calls fn with every batch of a closed segment, in order.
func forEachBatch(s *segment, fn func([]byte, batchHeader) error) error {
	r := io.NewSectionReader(s.log, 0, s.size)
	var buf []byte
	for {
		var hdr [batchHeaderLen]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		h, err := parseBatchHeader(hdr[:])
		if err != nil {
			return err
		}
		if int64(cap(buf)) < h.size() {
			buf = make([]byte, h.size())
		}
		buf = buf[:h.size()]
		copy(buf, hdr[:])
		if _, err := io.ReadFull(r, buf[batchHeaderLen:]); err != nil {
			return err
		}
		if err := fn(buf, h); err != nil {
			return err
		}
	}
}
