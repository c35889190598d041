package audit

import "sync"

// recordQueue is the producer's bounded queue: senders append under a
// mutex, and the producer takes everything waiting at once, swapping its
// written batch's slice in as the queue's next buffer. It replaced a
// channel of Records: each send copied the record into a slot of a ring
// buffer as large as the queue (100,000 slots, cold in the cache), and the
// producer received records one by one; here both buffers are the size of
// a batch and stay warm, and a batch costs the producer one lock.
type recordQueue struct {
	mu     sync.Mutex
	recs   []Record
	limit  int
	closed bool
	// ready wakes the producer: signaled when a record comes into an
	// empty queue, when records are left after a take, and at close.
	ready chan struct{}
	// room wakes senders waiting for room (Block).
	room *sync.Cond
}

func newRecordQueue(limit int) *recordQueue {
	q := &recordQueue{limit: limit, ready: make(chan struct{}, 1)}
	q.room = sync.NewCond(&q.mu)
	return q
}

// put queues r; with block it waits for room, otherwise a full queue (or a
// closed one) refuses it. n is the queue's length after.
func (q *recordQueue) put(r Record, block bool) (n int, ok bool) {
	q.mu.Lock()
	for block && len(q.recs) >= q.limit && !q.closed {
		q.room.Wait()
	}
	if len(q.recs) >= q.limit || q.closed {
		q.mu.Unlock()
		return 0, false
	}
	q.recs = append(q.recs, r)
	n = len(q.recs)
	q.mu.Unlock()
	if n == 1 {
		signal(q.ready)
	}
	return n, true
}

// take appends to batch up to max records, oldest first. done reports
// that the queue is closed and nothing is left in it. An empty batch's
// buffer becomes the queue's: its caller has cleared it, so that no
// record written is kept alive.
func (q *recordQueue) take(batch []Record, max int) (out []Record, done bool) {
	q.mu.Lock()
	n := min(len(q.recs), max-len(batch))
	if n == len(q.recs) && len(batch) == 0 {
		// Everything: swap buffers rather than copy.
		batch, q.recs = q.recs, batch
	} else {
		batch = append(batch, q.recs[:n]...)
		rest := copy(q.recs, q.recs[n:])
		clear(q.recs[rest:])
		q.recs = q.recs[:rest]
	}
	left, closed := len(q.recs), q.closed
	if n > 0 {
		q.room.Broadcast()
	}
	q.mu.Unlock()
	if left > 0 || closed {
		// More to take, or the end to see.
		signal(q.ready)
	}
	return batch, closed && left == 0
}

// len is the number of records waiting.
func (q *recordQueue) len() int {
	n, _ := q.state()
	return n
}

// state is the number of records waiting, and whether the queue is closed.
func (q *recordQueue) state() (int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.recs), q.closed
}

// close refuses further records; the producer takes what is left.
func (q *recordQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.room.Broadcast()
	q.mu.Unlock()
	signal(q.ready)
}

// signal wakes whoever waits on c, unless a wake-up is pending already.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
