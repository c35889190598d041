package logbroker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newFranzClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RetryTimeout(20 * time.Second)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceNumbered writes n records "key-i"/"value-i" and waits for all acks.
func produceNumbered(t testing.TB, cl *kgo.Client, topic string, from, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := from; i < from+n; i++ {
		wg.Add(1)
		r := &kgo.Record{Topic: topic, Key: []byte("key-" + strconv.Itoa(i)), Value: []byte("value-" + strconv.Itoa(i))}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("produce: %v", firstErr)
	}
}

// consumeN polls until n records arrived and returns them.
func consumeN(t testing.TB, cl *kgo.Client, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before timeout", len(out), n)
		}
		for _, e := range fs.Errors() {
			t.Fatalf("fetch error: %v", e.Err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// checkNumbered verifies every record 0..n-1 arrived once and, per
// partition, in produce order.
func checkNumbered(t testing.TB, recs []*kgo.Record, n int) {
	t.Helper()
	seen := make(map[int]bool)
	lastPerPartition := make(map[int32]int)
	for _, r := range recs {
		i, err := strconv.Atoi(string(r.Value[len("value-"):]))
		if err != nil || string(r.Key) != "key-"+strconv.Itoa(i) {
			t.Fatalf("unexpected record %q=%q", r.Key, r.Value)
		}
		if seen[i] {
			t.Fatalf("record %d delivered twice", i)
		}
		seen[i] = true
		if last, ok := lastPerPartition[r.Partition]; ok && i <= last {
			t.Fatalf("partition %d: record %d after %d", r.Partition, i, last)
		}
		lastPerPartition[r.Partition] = i
	}
	if len(seen) != n {
		t.Fatalf("got %d distinct records, want %d", len(seen), n)
	}
}

func TestFranzProduceConsume(t *testing.T) {
	tb := startBroker(t, Config{}, "")
	const topic, n = "audit.franz", 2000
	prod := newFranzClient(t, tb.addr, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(2*time.Millisecond))
	produceNumbered(t, prod, topic, 0, n)

	cons := newFranzClient(t, tb.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	recs := consumeN(t, cons, n, 30*time.Second)
	checkNumbered(t, recs, n)

	stats := tb.Stats()
	if len(stats) != DefaultPartitions {
		t.Fatalf("stats: %d partitions, want %d", len(stats), DefaultPartitions)
	}
	var total int64
	for _, s := range stats {
		total += s.HighWatermark
		if s.Bytes == 0 && s.HighWatermark > 0 {
			t.Errorf("partition %d: no bytes", s.Partition)
		}
	}
	if total != n {
		t.Fatalf("sum of high watermarks %d, want %d", total, n)
	}
}

// TestFranzGroupSplitAndRestart runs a two-member group, checks the
// partitions are split between the members, then restarts the broker and
// checks committed offsets survived.
func TestFranzGroupSplitAndRestart(t *testing.T) {
	dir := t.TempDir()
	tb := startBroker(t, Config{DataDir: dir}, "")
	const topic, group, n = "audit.group", "compliance", 400
	prod := newFranzClient(t, tb.addr, kgo.DefaultProduceTopic(topic))
	produceNumbered(t, prod, topic, 0, n)

	groupOpts := []kgo.Opt{
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.SessionTimeout(3 * time.Second),
		kgo.DisableAutoCommit(),
	}
	var owned [2]ownedPartitions
	c1 := newFranzClient(t, tb.addr, append(groupOpts, kgo.ClientID("member-1"), owned[0].opts(), kgo.OnPartitionsRevoked(owned[0].revoke), kgo.OnPartitionsLost(owned[0].revoke))...)
	c2 := newFranzClient(t, tb.addr, append(groupOpts, kgo.ClientID("member-2"), owned[1].opts(), kgo.OnPartitionsRevoked(owned[1].revoke), kgo.OnPartitionsLost(owned[1].revoke))...)

	// Poll both until all records are consumed and both own partitions.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := map[string]map[int32]bool{"1": {}, "2": {}}
	var recs []*kgo.Record
	var wg sync.WaitGroup
	pollCtx, stopPolling := context.WithCancel(ctx)
	for name, cl := range map[string]*kgo.Client{"1": c1, "2": c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pollCtx.Err() == nil {
				fs := cl.PollFetches(pollCtx)
				mu.Lock()
				fs.EachRecord(func(r *kgo.Record) {
					got[name][r.Partition] = true
					recs = append(recs, r)
				})
				mu.Unlock()
				if len(fs.Records()) > 0 {
					if err := cl.CommitUncommittedOffsets(pollCtx); err != nil && pollCtx.Err() == nil {
						t.Errorf("commit: %v", err)
					}
				}
			}
		}()
	}
	deadline := time.NewTimer(45 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-deadline.C:
			stopPolling()
			wg.Wait()
			t.Fatalf("timed out: %d records, member partitions %v", len(recs), got)
		case <-tick.C:
		}
		mu.Lock()
		// Both members must currently hold partitions and all records
		// must have arrived.
		a1, a2 := owned[0].count(), owned[1].count()
		done = len(recs) >= n && a1 > 0 && a2 > 0 && a1+a2 == DefaultPartitions
		mu.Unlock()
	}
	stopPolling()
	wg.Wait()
	mu.Lock()
	distinct := make(map[string]bool)
	for _, r := range recs {
		distinct[string(r.Value)] = true
	}
	mu.Unlock()
	if len(distinct) != n {
		t.Fatalf("group consumed %d distinct records, want %d", len(distinct), n)
	}
	commitCtx, cancelCommit := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelCommit()
	for _, cl := range []*kgo.Client{c1, c2} {
		if err := cl.CommitUncommittedOffsets(commitCtx); err != nil {
			t.Fatalf("final commit: %v", err)
		}
	}
	c1.Close()
	c2.Close()

	// Restart on the same data dir: committed offsets must be there.
	tb.stop(t)
	tb2 := startBroker(t, Config{DataDir: dir}, "")
	admin := newFranzClient(t, tb2.addr)
	offsets := fetchCommitted(t, admin, group, topic)
	var sum int64
	for p, o := range offsets {
		if o < 0 {
			t.Fatalf("partition %d: no committed offset after restart", p)
		}
		sum += o
	}
	if sum != n {
		t.Fatalf("committed offsets sum to %d after restart, want %d (%v)", sum, n, offsets)
	}

	// A new member of the group resumes after the committed offsets.
	prod2 := newFranzClient(t, tb2.addr, kgo.DefaultProduceTopic(topic))
	produceNumbered(t, prod2, topic, n, 10)
	c3 := newFranzClient(t, tb2.addr, groupOpts...)
	more := consumeN(t, c3, 10, 30*time.Second)
	for _, r := range more {
		i, _ := strconv.Atoi(string(r.Value[len("value-"):]))
		if i < n {
			t.Fatalf("record %d consumed again after restart", i)
		}
	}
}

func fetchCommitted(t testing.TB, cl *kgo.Client, group, topic string) map[int32]int64 {
	t.Helper()
	req := newOffsetFetch(group, topic, DefaultPartitions)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int32]int64)
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 {
				t.Fatalf("offset fetch partition %d: error %d", rp.Partition, rp.ErrorCode)
			}
			out[rp.Partition] = rp.Offset
		}
	}
	if len(out) != DefaultPartitions {
		t.Fatalf("offset fetch returned %d partitions: %v", len(out), fmt.Sprint(out))
	}
	return out
}

func newOffsetFetch(group, topic string, partitions int) *kmsg.OffsetFetchRequest {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	for p := 0; p < partitions; p++ {
		rt.Partitions = append(rt.Partitions, int32(p))
	}
	req.Topics = append(req.Topics, rt)
	return req
}

// ownedPartitions tracks a group member's assignment through callbacks.
type ownedPartitions struct {
	mu    sync.Mutex
	parts map[int32]bool
}

func (o *ownedPartitions) opts() kgo.Opt {
	return kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.parts == nil {
			o.parts = make(map[int32]bool)
		}
		for _, ps := range m {
			for _, p := range ps {
				o.parts[p] = true
			}
		}
	})
}

func (o *ownedPartitions) revoke(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ps := range m {
		for _, p := range ps {
			delete(o.parts, p)
		}
	}
}

func (o *ownedPartitions) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.parts)
}

// TestFsyncPolicies produces and consumes under every fsync policy, across
// a restart.
func TestFsyncPolicies(t *testing.T) {
	for _, policy := range []string{FsyncAlways, FsyncInterval, FsyncOS} {
		t.Run(policy, func(t *testing.T) {
			cfg := Config{DataDir: t.TempDir(), Fsync: policy, FsyncInterval: 10 * time.Millisecond}
			tb := startBroker(t, cfg, "")
			prod := newFranzClient(t, tb.addr, kgo.DefaultProduceTopic("fsync"))
			produceNumbered(t, prod, "fsync", 0, 500)
			prod.Close()
			tb.stop(t)
			tb2 := startBroker(t, cfg, "")
			cons := newFranzClient(t, tb2.addr, kgo.ConsumeTopics("fsync"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			checkNumbered(t, consumeN(t, cons, 500, 30*time.Second), 500)
		})
	}
}
