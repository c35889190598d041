package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/logbroker"
)

// Genlog's record arrays are recycled once the bundled broker stores them:
// sessions logging at once through many small batches (each array reused
// again and again) must leave every record stored whole, once, with the
// text it was given, and every chain valid.
func TestRecycledRecordsStayWhole(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, ln := startBroker(t, logbroker.Config{Partitions: 3, Fsync: logbroker.FsyncOS}, log)
	const topic = "recycle.test"
	// A small queue ends each linger after 100 records: hundreds of batches.
	p, err := audit.NewProducer(audit.ProducerConfig{Kafka: audit.PlainKafka(ln.Addr().String()), Name: "test", Chain: true, Local: b,
		QueueSize: 200, Block: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	g := audit.NewGenlog(audit.Config{Topic: topic, Proxy: "p1"}, p)
	const sessions, perSession = 8, 2500
	var wg sync.WaitGroup
	for id := range sessions {
		wg.Go(func() {
			s := &audit.Session{ID: uint32(id + 1), User: "app", DB: "shop"}
			for i := range perSession {
				// Texts of varied lengths, so arrays of one size serve records of another.
				text := fmt.Sprintf("SELECT %d, %d FROM t%s", id, i, make([]byte, i%300))
				g.LogQuery(s, &audit.Query{Start: time.Now(), Command: "COM_QUERY", Text: text, Fingerprint: "SELECT ?, ? FROM t"})
			}
		})
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(ln.Addr().String()), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next := map[uint32]uint64{} // session -> next seq expected
	for got := 0; got < sessions*perSession; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("after %d records: %v", got, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			var rec struct {
				Session uint32
				Seq     uint64
				Query   string
			}
			if err := json.Unmarshal(r.Value, &rec); err != nil {
				t.Fatalf("record at %d/%d is not whole JSON: %v: %q", r.Partition, r.Offset, err, r.Value)
			}
			if want := next[rec.Session] + 1; rec.Seq != want {
				t.Fatalf("session %d: seq %d after %d", rec.Session, rec.Seq, want-1)
			}
			next[rec.Session] = rec.Seq
			i := int(rec.Seq) - 1 // one query record per seq, from 1
			if want := fmt.Sprintf("SELECT %d, %d FROM t%s", rec.Session-1, i, make([]byte, i%300)); rec.Query != want {
				t.Fatalf("session %d seq %d: query %q, want %q", rec.Session, rec.Seq, rec.Query, want)
			}
		})
	}
	reps, err := audit.Verify(ctx, audit.PlainKafka(ln.Addr().String()), topic)
	if err != nil {
		t.Fatal(err)
	}
	verified := 0
	for _, r := range reps {
		for _, pr := range r.Problems {
			t.Errorf("partition %d: %v", r.Partition, pr)
		}
		verified += r.Verified
	}
	if verified != sessions*perSession {
		t.Fatalf("verified %d records, want %d", verified, sessions*perSession)
	}
}
