package kafkaout

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// A batch lingers for more records, but once half the queue (or a whole
// batch) waits, it goes at once: a burst must not fill the queue, and then
// drop or spill records, while the producer sleeps.
func TestLingerEndsWhenTheQueueFills(t *testing.T) {
	p := &Producer{
		queue:       make(chan kafka.Message, 10),
		linger:      time.Hour,
		lingerTimer: time.NewTimer(time.Hour),
		full:        make(chan struct{}, 1),
		flushAt:     5,
	}
	p.lingerTimer.Stop()
	p.full <- struct{}{} // a stale signal from an earlier burst is ignored
	p.Send("t", nil, []byte("{}"))
	got := make(chan int, 1)
	go func() { got <- len(p.gather(make([]kafka.Message, 0, maxBatch))) }()
	select {
	case n := <-got:
		t.Fatalf("the batch went with %d record(s) before the queue filled or the linger ended", n)
	case <-time.After(50 * time.Millisecond):
	}
	for range 4 {
		if !p.Send("t", nil, []byte("{}")) {
			t.Fatal("send refused with room in the queue")
		}
	}
	select {
	case n := <-got:
		// The record gather was handed first is not counted: 5 queued.
		if n != 5 {
			t.Fatalf("batch of %d records, want the 5 queued", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the batch still lingers with half the queue full")
	}
}
