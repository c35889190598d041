package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"runtime"
	"slices"
	"time"

	"github.com/tidwall/gjson"
)

// A chained record ends with ,"chain":"<64 hex digits>"}: the SHA-256 of the
// previous record's chain in the same partition followed by the record
// without its chain field. Removing or altering a record breaks every chain
// value after it, which `sluice audit verify` reports.
const chainField = `,"chain":"`

// chainLen is the length of the chain suffix: the field, 64 hex digits, "}.
const chainLen = len(chainField) + 64 + 2

// chainSum is the chain value of record (without its chain field) after
// the chain value prev.
func chainSum(prev [32]byte, record []byte) [32]byte {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(record)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// chainRecord seals record (a JSON object) after prev, returning the sealed
// record and its chain value. The sealed record is built in record's spare
// capacity when it has enough (Genlog leaves room), which overwrites the
// record's closing brace: unseal puts it back if the record is needed again.
func chainRecord(prev [32]byte, record []byte) ([]byte, [32]byte) {
	sum := chainSum(prev, record)
	out := record[:len(record)-1]
	if cap(record)-len(record) < chainLen {
		out = append(make([]byte, 0, len(record)+chainLen), out...)
	}
	out = append(out, chainField...)
	out = hex.AppendEncode(out, sum[:])
	out = append(out, '"', '}')
	return out, sum
}

// unseal restores records that seal may have sealed in place.
func (p *Producer) unseal(batch []Record) {
	if !p.sealInPlace {
		return
	}
	for _, r := range batch {
		if n := len(r.Value); n > 0 {
			r.Value[n-1] = '}'
		}
	}
}

// chainValue is the chain value a sealed record ends with; ok is false for
// a record without one.
func chainValue(sealed []byte) (chain [32]byte, ok bool) {
	if len(sealed) < chainLen+2 || !bytes.HasSuffix(sealed, []byte(`"}`)) {
		return chain, false
	}
	at := len(sealed) - chainLen
	if !bytes.Equal(sealed[at:at+len(chainField)], []byte(chainField)) {
		return chain, false
	}
	if _, err := hex.Decode(chain[:], sealed[at+len(chainField):len(sealed)-2]); err != nil {
		return chain, false
	}
	return chain, true
}

// unchainRecord splits a sealed record into the record as it was sealed and
// its chain value; ok is false for a record without one.
func unchainRecord(sealed []byte) (record []byte, chain [32]byte, ok bool) {
	if chain, ok = chainValue(sealed); !ok {
		return nil, chain, false
	}
	at := len(sealed) - chainLen
	record = append(append(make([]byte, 0, at+1), sealed[:at]...), '}')
	return record, chain, true
}

// partitionOf maps a key to a partition, stably.
func partitionOf(key []byte, partitions int) int {
	h := fnv.New32a()
	h.Write(key)
	return int(h.Sum32() % uint32(partitions))
}

// chainState is the last chain value of each partition of a topic.
type chainState struct {
	last [][32]byte
	// skip counts, per partition, the next records to seal but not send:
	// a failed write stored them after all (see resolveInDoubt).
	skip []int
	// count is, per partition, how many records of this chain it holds
	// (with signed checkpoints; see resumeCheckpoints).
	count []int64
}

// loadChain reads a topic's partitions and the chain value of the last
// record of each, so a restarted Sluice continues the chains.
func (p *Producer) loadChain(topic string) (*chainState, error) {
	if st := p.chains[topic]; st != nil {
		return st, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := p.brokers.reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// The first metadata request may create the topic: ask again.
	parts, err := r.partitions(ctx, topic, true)
	if err == nil && len(parts) == 0 {
		parts, err = r.partitions(ctx, topic, true)
	}
	if err != nil || len(parts) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions yet: %v", topic, err)
	}
	n := slices.Max(parts) + 1
	st := &chainState{last: make([][32]byte, n), skip: make([]int, n), count: make([]int64, n)}
	for _, part := range parts {
		if st.last[part], err = tailChain(ctx, r, topic, part, p.chainOwner); err != nil {
			return nil, err
		}
		if p.signer != nil {
			// A first start with a key counts the partition's records: give
			// it longer than a tail read.
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Minute)
			err := p.resumeCheckpoints(rctx, r, topic, part, st)
			rcancel()
			if err != nil {
				return nil, err
			}
		}
	}
	p.chains[topic] = st
	return st, nil
}

// tailScanLimit bounds how far back tailChain looks for the writer's own
// last record; past it the chain starts afresh (verify anchors it).
const tailScanLimit = 200000

// tailChain is the chain value of the last record in a partition written
// by owner (the records' "proxy"; any record when owner is empty): each
// Sluice instance keeps its own chain, so a clone set can share a topic.
// It is zero when there is none.
func tailChain(ctx context.Context, r *trailReader, topic string, part int, owner string) ([32]byte, error) {
	var chain [32]byte
	err := scanBack(ctx, r, topic, part, func(v []byte) bool {
		if owner != "" && gjson.GetBytes(v, "proxy").String() != owner {
			return false
		}
		c, ok := chainValue(v)
		if ok {
			chain = c
		}
		return ok
	})
	return chain, err
}

// scanBack reads a partition backwards, a window of records at a time
// (each window in order), until match has held for a record of a window,
// or tailScanLimit records were read.
func scanBack(ctx context.Context, r *trailReader, topic string, part int, match func(value []byte) bool) error {
	first, end, err := r.bounds(ctx, topic, part)
	if err != nil {
		return err
	}
	const window = 2000
	for to := end; to > first && end-to < tailScanLimit; {
		from := max(first, to-window)
		found := false
		err := r.readRange(ctx, topic, part, from, to, func(_ int64, v []byte) {
			if match(v) {
				found = true
			}
		})
		if err != nil || found {
			return err
		}
		to = from
	}
	return nil
}

// scanForward calls fn with every record of a partition from offset from
// (-1: the first kept) to its end.
func scanForward(ctx context.Context, r *trailReader, topic string, part int, from int64, fn func(offset int64, value []byte)) error {
	first, end, err := r.bounds(ctx, topic, part)
	if err != nil {
		return err
	}
	return r.readRange(ctx, topic, part, max(first, from), end, fn)
}

// inDoubt holds the chain values, per topic and partition in order, of a
// write that failed: the broker may have stored some of its records before
// the failure was seen.
type inDoubt map[string]map[int][][32]byte

// resolveInDoubt asks the broker for each partition's last record after a
// failed write. When it is one of the write's records, that record and
// those before it in the partition were stored: the retry seals them again
// (to the same values) but does not send them, so they arrive once.
func (p *Producer) resolveInDoubt() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := p.brokers.reader()
	if err != nil {
		return err
	}
	defer r.Close()
	stored := 0
	for topic, byPart := range p.doubt {
		st := p.chains[topic]
		for part, chains := range byPart {
			if len(chains) == 0 || part >= len(st.skip) {
				continue
			}
			tail, err := tailChain(ctx, r, topic, part, p.chainOwner)
			if err != nil {
				return err
			}
			for i, c := range chains {
				if c == tail {
					// After records skipped by an earlier resolution, if any.
					st.skip[part] += i + 1
					stored += i + 1
					break
				}
			}
		}
	}
	if stored > 0 {
		p.log.Info("records of a failed write were stored after all; they are not sent again", "records", stored)
	}
	p.doubt = nil
	return nil
}

// seal chains a batch in order; the new chain values are committed only
// once the batch is written. Records a failed write stored after all are
// sealed but left out.
func (p *Producer) seal(batch []Record) ([]Record, func(), error) {
	next := map[string]*chainState{}
	out := make([]Record, 0, len(batch))
	for i, r := range batch {
		if i%yieldEvery == yieldEvery-1 {
			// A batch of thousands of records is milliseconds of hashing:
			// let the sessions run between slices of it, or with one
			// processor every query waits for the whole batch.
			runtime.Gosched()
		}
		if p.isCheckpoint(r.Topic) {
			// Signed already: sent as it is, all to partition 0, in order.
			r.Partition = 0
			out = append(out, r)
			continue
		}
		st, err := p.loadChain(r.Topic)
		if err != nil {
			return nil, nil, err
		}
		n := next[r.Topic]
		if n == nil {
			n = &chainState{last: append([][32]byte(nil), st.last...), skip: append([]int(nil), st.skip...),
				count: append(make([]int64, len(st.last)-len(st.count)), st.count...)}
			next[r.Topic] = n
		}
		part := partitionOf(r.Key, len(n.last))
		r.Partition = part
		if !p.sealInPlace {
			r.Value = slices.Clip(r.Value) // chainRecord copies it
		}
		r.Value, n.last[part] = chainRecord(n.last[part], r.Value)
		n.count[part]++
		if n.skip[part] > 0 {
			n.skip[part]--
			continue
		}
		out = append(out, r)
	}
	commit := func() {
		for topic, n := range next {
			p.chains[topic].last, p.chains[topic].skip, p.chains[topic].count = n.last, n.skip, n.count
		}
	}
	return out, commit, nil
}

// yieldEvery is how many records the producer handles between yields.
const yieldEvery = 64

// noteInDoubt remembers the chain values of a sealed batch whose write failed.
func (p *Producer) noteInDoubt(sealed []Record) {
	if p.doubt == nil {
		p.doubt = inDoubt{}
	}
	for _, r := range sealed {
		chain, ok := chainValue(r.Value)
		if !ok {
			continue
		}
		byPart := p.doubt[r.Topic]
		if byPart == nil {
			byPart = map[int][][32]byte{}
			p.doubt[r.Topic] = byPart
		}
		byPart[r.Partition] = append(byPart[r.Partition], chain)
	}
}
