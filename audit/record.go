package audit

import "sync"

// Record is one Kafka record on its way to the broker: made by Genlog (or
// the topology events), queued, sealed by the chain, spilled and written
// as it is. It becomes a kgo.Record only where the Kafka writer takes it
// (kafkaWriter).
type Record struct {
	Topic string
	// Key picks the partition: Genlog's is the session id, so that a
	// session's records stay in order in one partition.
	Key []byte
	// Value is one JSON object.
	Value []byte
	// Partition is the partition whose chain sealed the record; the writer
	// stores it there. Unsealed records leave it to the writer, by key.
	Partition int
	// Offset is where the writer stored the record; -1 when it did not
	// say.
	Offset int64
	// buf, when set, is the holder of Value's array from recordBuffers:
	// the producer returns the array through it once the record is stored.
	buf *[]byte
}

// recordBuffers recycles the arrays of records the bundled broker has
// stored, for Genlog's next records: an array per query was nearly all the
// garbage the proxy made, and the collector's assists fell on the sessions.
// It holds at most what was in flight at once (the queue's limit), and the
// collector empties it when records stop flowing.
var recordBuffers = sync.Pool{New: func() any { return new([]byte) }}

// Buffer sizes: most records fit in minRecordBuffer; a rare huge one's
// array is left to the collector rather than kept past maxRecordBuffer.
const (
	minRecordBuffer = 1 << 10
	maxRecordBuffer = 16 << 10
)

// newRecordBuffer returns an empty slice of at least size bytes and the
// holder that goes with it in Record.buf.
func newRecordBuffer(size int) (*[]byte, []byte) {
	h := recordBuffers.Get().(*[]byte)
	b := (*h)[:0]
	if cap(b) < size {
		b = make([]byte, 0, max(size, minRecordBuffer))
	}
	return h, b
}

// release gives r's array back to recordBuffers; nothing may read r's
// Value after.
func (r *Record) release() {
	h := r.buf
	if h == nil || cap(r.Value) > maxRecordBuffer {
		return
	}
	*h, r.buf, r.Value = r.Value[:0], nil, nil
	recordBuffers.Put(h)
}

// Sink takes records; the producer behind it owns delivery.
type Sink interface {
	// Send queues one record; it never waits on the broker.
	Send(Record) bool
}
