package audit_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/logbroker"
)

// relay forwards Kafka frames between clients and the broker. While
// swallow is set it passes produce requests on but discards the broker's
// answers to them and cuts the connection: the broker stores a write whose
// acknowledgement is lost. While down is set it passes nothing and cuts
// every connection: no broker answers.
type relay struct {
	ln      net.Listener
	target  string
	swallow atomic.Bool
	down    atomic.Bool
	wg      sync.WaitGroup
}

func startRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() { defer r.wg.Done(); r.pipe(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); r.wg.Wait() })
	return r
}

// readFrame reads one size-prefixed Kafka frame.
func readFrame(c net.Conn) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return nil, err
	}
	frame := make([]byte, 4+binary.BigEndian.Uint32(size[:]))
	copy(frame, size[:])
	_, err := io.ReadFull(c, frame[4:])
	return frame, err
}

func (r *relay) pipe(client net.Conn) {
	defer client.Close()
	if r.down.Load() {
		return
	}
	server, err := net.DialTimeout("tcp", r.target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	var mu sync.Mutex
	produces := map[uint32]bool{} // correlation ids of produce requests
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		for {
			frame, err := readFrame(client)
			if err != nil || len(frame) < 12 {
				return
			}
			if r.down.Load() {
				return
			}
			if binary.BigEndian.Uint16(frame[4:]) == 0 { // Produce
				mu.Lock()
				produces[binary.BigEndian.Uint32(frame[8:])] = true
				mu.Unlock()
			}
			if _, err := server.Write(frame); err != nil {
				return
			}
		}
	}()
	for {
		frame, err := readFrame(server)
		if err != nil || len(frame) < 8 {
			break
		}
		mu.Lock()
		produce := produces[binary.BigEndian.Uint32(frame[4:])]
		mu.Unlock()
		if produce && r.swallow.Load() {
			break // the acknowledgement is lost; the connection is cut
		}
		if _, err := client.Write(frame); err != nil {
			break
		}
	}
	client.Close()
	<-done
}

func readValues(t *testing.T, broker, topic string) map[int]int {
	t.Helper()
	seen := map[int]int{}
	for _, values := range lab.ReadTopic(t, &kafka.Dialer{Timeout: 10 * time.Second}, []string{broker}, topic) {
		for _, v := range values {
			var rec struct{ N int }
			if err := json.Unmarshal(v, &rec); err != nil {
				t.Fatal(err)
			}
			seen[rec.N]++
		}
	}
	return seen
}

// A write the broker stored but did not acknowledge is not sent again: the
// producer finds its records at the partitions' ends by their chain values.
// While no broker answers, records go to the spill file, and arrive once
// when it is back.
func TestLostAcknowledgementDeliversOnce(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &lab.SyncBuffer{}
	var out io.Writer = logs
	if testing.Verbose() {
		out = io.MultiWriter(logs, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(out, nil))
	rl := startRelay(t, ln.Addr().String())
	b, err := logbroker.New(logbroker.Config{Listen: ln.Addr().String(), AdvertisedListen: rl.ln.Addr().String(),
		DataDir: filepath.Join(dir, "broker"), Partitions: 2}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("broker: %v", err)
		}
		b.Close()
	}()

	const topic = "once.test"
	p, err := audit.NewProducer(audit.ProducerConfig{Kafka: audit.PlainKafka(rl.ln.Addr().String()), Name: "test", Chain: true,
		SpillFile: filepath.Join(dir, "spill")}, log)
	if err != nil {
		t.Fatal(err)
	}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			p.Send(audit.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 7)), Value: []byte(`{"N":` + strconv.Itoa(i) + `}`)})
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			tm := time.NewTimer(20 * time.Millisecond)
			<-tm.C
		}
	}
	stored := func() int {
		n := 0
		for _, c := range readValues(t, ln.Addr().String(), topic) {
			n += c
		}
		return n
	}
	send(0, 100)
	waitFor("the first records", func() bool { return stored() == 100 })

	rl.swallow.Store(true)
	send(100, 200)
	// The broker stores them; the producer sees its connection cut.
	waitFor("the unacknowledged write to be stored", func() bool { return stored() == 200 })
	rl.swallow.Store(false)
	send(200, 300)
	waitFor("the next records", func() bool { return stored() == 300 })

	spills := strings.Count(logs.String(), "spilling records")
	rl.down.Store(true)
	send(300, 400)
	waitFor("records to go to the spill file", func() bool { return strings.Count(logs.String(), "spilling records") > spills })
	rl.down.Store(false)
	send(400, 500)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	seen := readValues(t, ln.Addr().String(), topic)
	for i := range 500 {
		if seen[i] != 1 {
			t.Errorf("record %d stored %d times", i, seen[i])
		}
	}
	reps, err := audit.Verify(context.Background(), audit.PlainKafka(ln.Addr().String()), topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if len(r.Problems) > 0 || r.Duplicates > 0 {
			t.Errorf("partition %d: %+v", r.Partition, r)
		}
	}
}

// startBroker serves a bundled broker in this process until the test ends.
func startBroker(tb testing.TB, cfg logbroker.Config, log *slog.Logger) (*logbroker.Broker, net.Listener) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Listen, cfg.DataDir = ln.Addr().String(), filepath.Join(tb.TempDir(), "broker")
	b, err := logbroker.New(cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx, ln) }()
	tb.Cleanup(func() { cancel(); <-served; b.Close() })
	return b, ln
}

// The in-process path stores what a Kafka client reads back, in order per
// key, with valid chains.
func TestLocalWriter(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, ln := startBroker(t, logbroker.Config{Partitions: 3}, log)

	const topic = "local.test"
	p, err := audit.NewProducer(audit.ProducerConfig{Kafka: audit.PlainKafka(ln.Addr().String()), Name: "test", Chain: true, Local: b}, log)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := range n {
		p.Send(audit.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 11)), Value: []byte(`{"N":` + strconv.Itoa(i) + `}`)})
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	seen := readValues(t, ln.Addr().String(), topic)
	for i := range n {
		if seen[i] != 1 {
			t.Fatalf("record %d stored %d times", i, seen[i])
		}
	}
	reps, err := audit.Verify(context.Background(), audit.PlainKafka(ln.Addr().String()), topic)
	if err != nil {
		t.Fatal(err)
	}
	verified := 0
	for _, r := range reps {
		if len(r.Problems) > 0 {
			t.Errorf("partition %d: %v", r.Partition, r.Problems)
		}
		verified += r.Verified
	}
	if verified != n {
		t.Fatalf("verified %d records, want %d", verified, n)
	}
}

// Several Sluice instances share one topic: each keeps its own chain, a
// restarted one continues its own, and verify finds every chain whole.
func TestSharedTopicChains(t *testing.T) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	_, ln := startBroker(t, logbroker.Config{Partitions: 2}, log)

	const topic = "shared.test"
	newProducer := func(owner string) *audit.Producer {
		p, err := audit.NewProducer(audit.ProducerConfig{Kafka: audit.PlainKafka(ln.Addr().String()), Name: owner, Chain: true, ChainOwner: owner}, log)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	send := func(p *audit.Producer, owner string, from, to int) {
		for i := from; i < to; i++ {
			p.Send(audit.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 5)), Value: []byte(`{"proxy":"` + owner + `","N":` + strconv.Itoa(i) + `}`)})
		}
	}
	a, bb := newProducer("sluice-a"), newProducer("sluice-b")
	for round := range 5 {
		send(a, "sluice-a", round*100, round*100+100)
		send(bb, "sluice-b", 10000+round*100, 10000+round*100+100)
	}
	a.Close()
	send(bb, "sluice-b", 20000, 20100) // b's records now end every partition
	bb.Close()
	a = newProducer("sluice-a") // continues its own chain, not b's
	send(a, "sluice-a", 30000, 30100)
	a.Close()

	seen := readValues(t, ln.Addr().String(), topic)
	if len(seen) != 1200 { // 500 + 100 from a, 500 + 100 from b
		t.Fatalf("%d distinct records, want 1200", len(seen))
	}
	reps, err := audit.Verify(context.Background(), audit.PlainKafka(ln.Addr().String()), topic)
	if err != nil {
		t.Fatal(err)
	}
	verified := 0
	for _, r := range reps {
		if len(r.Problems) > 0 || r.Duplicates > 0 {
			t.Errorf("partition %d: %+v", r.Partition, r)
		}
		verified += r.Verified
	}
	if verified != 1200 {
		t.Fatalf("verified %d records, want 1200", verified)
	}
}

// A producer creates its topics before any record, in process or with a
// CreateTopics request, even where auto-creation is off; again is fine.
func TestProducerCreatesTopics(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	off := false
	b, ln := startBroker(t, logbroker.Config{Partitions: 3, AutoCreateTopics: &off}, log)
	addr := ln.Addr().String()
	for _, c := range []struct {
		name  string
		local *logbroker.Broker
	}{{"in-process", b}, {"kafka", nil}} {
		p, err := audit.NewProducer(audit.ProducerConfig{Kafka: audit.PlainKafka(addr), Name: c.name, Local: c.local}, log)
		if err != nil {
			t.Fatal(err)
		}
		topic := "created." + c.name
		for range 2 {
			if err := p.CreateTopics(context.Background(), topic, "sluice.events"); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
		p.Close()
		if got := lab.Topics(t, addr); got[topic] != 3 || got["sluice.events"] != 3 {
			t.Fatalf("%s: topics %v", c.name, got)
		}
	}
}
