package audit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/sluice-proxy/sluice/internal/lockfile"
)

// spill is an append-only file of records the broker could not take yet,
// replayed in order when it is back. A sidecar file remembers how far the
// replay got, so a restarted Sluice resumes there: records are delivered at
// least once, in order.
type spill struct {
	path    string
	f       *os.File
	w       *bufio.Writer
	size    int64 // bytes appended
	readPos int64 // bytes replayed
	limit   int64 // bytes at most; 0: unlimited
	lock    *lockfile.Lock
}

// openSpill opens (or creates) the spill file and its replay position.
// The file is locked first (path.lock), so that a second process on the
// same spill file stops before the crash repair below could cut records
// the first one is writing.
func openSpill(path string, limit int64) (*spill, error) {
	lock, err := lockfile.Acquire(path+".lock", "genlog.spill_file "+path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		lock.Release()
		return nil, fmt.Errorf("open spill file %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		lock.Release()
		return nil, err
	}
	s := &spill{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10), size: st.Size(), limit: limit, lock: lock}
	if b, err := os.ReadFile(path + ".pos"); err == nil {
		s.readPos, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	if s.readPos > s.size {
		s.readPos = s.size
	}
	// A crash can leave half a record at the end: cut it off.
	if good := s.lastComplete(); good < s.size {
		if err := f.Truncate(good); err != nil {
			f.Close()
			lock.Release()
			return nil, err
		}
		s.size = good
	}
	return s, nil
}

// lastComplete is the end of the last whole record.
func (s *spill) lastComplete() int64 {
	br := bufio.NewReaderSize(io.NewSectionReader(s.f, s.readPos, s.size-s.readPos), 64<<10)
	pos := s.readPos
	for pos < s.size {
		var hdr [12]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return pos
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:])) + int64(binary.BigEndian.Uint32(hdr[4:])) + int64(binary.BigEndian.Uint32(hdr[8:]))
		if pos+12+n > s.size {
			return pos
		}
		if _, err := br.Discard(int(n)); err != nil {
			return pos
		}
		pos += 12 + n
	}
	return pos
}

// pending reports whether records wait in the file.
func (s *spill) pending() bool { return s.readPos < s.size }

// errSpillFull means the spill file reached its size limit.
var errSpillFull = errors.New("spill file full")

// append writes records: topic, key and value, each length-prefixed.
func (s *spill) append(recs []Record) error {
	for _, r := range recs {
		n := int64(12 + len(r.Topic) + len(r.Key) + len(r.Value))
		if s.limit > 0 && s.size+n > s.limit {
			return errSpillFull
		}
		var hdr [12]byte
		binary.BigEndian.PutUint32(hdr[0:], uint32(len(r.Topic)))
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(r.Key)))
		binary.BigEndian.PutUint32(hdr[8:], uint32(len(r.Value)))
		s.w.Write(hdr[:])
		s.w.WriteString(r.Topic)
		s.w.Write(r.Key)
		if _, err := s.w.Write(r.Value); err != nil {
			return fmt.Errorf("write spill file %s: %w", s.path, err)
		}
		s.size += n
	}
	return s.w.Flush()
}

// next reads up to max records from the replay position, and the position
// after them.
func (s *spill) next(max int) ([]Record, int64, error) {
	r := io.NewSectionReader(s.f, s.readPos, s.size-s.readPos)
	br := bufio.NewReaderSize(r, 64<<10)
	pos := s.readPos
	var out []Record
	for len(out) < max && pos < s.size {
		var hdr [12]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return out, pos, fmt.Errorf("read spill file %s at %d: %w", s.path, pos, err)
		}
		tl, kl, vl := binary.BigEndian.Uint32(hdr[0:]), binary.BigEndian.Uint32(hdr[4:]), binary.BigEndian.Uint32(hdr[8:])
		body := make([]byte, int(tl)+int(kl)+int(vl))
		if _, err := io.ReadFull(br, body); err != nil {
			return out, pos, fmt.Errorf("read spill file %s at %d: %w", s.path, pos, err)
		}
		out = append(out, Record{Topic: string(body[:tl]), Key: body[tl : tl+kl], Value: body[tl+kl:]})
		pos += int64(12 + len(body))
	}
	return out, pos, nil
}

// advance records that everything before pos was delivered; an emptied
// file is truncated.
func (s *spill) advance(pos int64) error {
	s.readPos = pos
	if s.readPos >= s.size {
		if err := s.f.Truncate(0); err != nil {
			return err
		}
		s.size, s.readPos = 0, 0
	}
	return os.WriteFile(s.path+".pos", []byte(strconv.FormatInt(s.readPos, 10)), 0o600)
}

func (s *spill) close() error {
	s.w.Flush()
	err := s.f.Close()
	s.lock.Release()
	return err
}
