package audit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/logbroker"
)

// A signing producer writes checkpoints that VerifySigned accepts, carries
// its count across a restart, and a record an outsider appends with a
// correctly recomputed chain is found: it is not on the signed chain.
func TestSignedCheckpoints(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, ln := startBroker(t, logbroker.Config{Partitions: 2}, log)
	addr := ln.Addr().String()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	const topic = "signed.test"
	run := func(from, to int) *audit.Producer {
		p, err := audit.NewProducer(audit.ProducerConfig{Kafka: audit.PlainKafka(addr), Name: "t", Chain: true, ChainOwner: "s1", Local: b,
			SigningKey: key, CheckpointInterval: 50 * time.Millisecond}, log)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			p.Send(audit.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 7)), Value: []byte(`{"proxy":"s1","N":` + strconv.Itoa(i) + `}`)})
		}
		return p
	}
	verify := func() *audit.SignedReport {
		t.Helper()
		rep, err := audit.VerifySigned(context.Background(), audit.SignedOptions{Kafka: audit.PlainKafka(addr), Topic: topic, Keys: []ed25519.PublicKey{pub}})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	p := run(0, 500)
	p.Close()
	p = run(500, 1000) // a restart: counts go on from the checkpoints
	p.Close()
	cps := p.Checkpoints()
	if len(cps) == 0 {
		t.Fatal("no checkpoints kept for the admin API")
	}
	rep := verify()
	covered := 0
	for _, sp := range rep.Partitions {
		covered += sp.Covered
	}
	if !rep.Ok() || covered != 1000 {
		t.Fatalf("untouched trail: ok %v, %d covered: %+v", rep.Ok(), covered, rep)
	}
	// With the wrong key nothing is proven.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if rep, _ := audit.VerifySigned(context.Background(), audit.SignedOptions{Kafka: audit.PlainKafka(addr), Topic: topic, Keys: []ed25519.PublicKey{other}}); rep.Ok() {
		t.Fatal("checkpoints accepted under another key")
	}

	// An outsider appends a record: uncovered until Sluice writes again,
	// then not on the signed chain.
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return 0 })}
	forged := []byte(`{"proxy":"s1","N":-1,"chain":"` + strings.Repeat("0", 64) + `"}`)
	if err := w.WriteMessages(context.Background(), kafka.Message{Value: forged}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if rep := verify(); !rep.Ok() || rep.Partitions[0].Uncovered != 1 {
		t.Fatalf("a record after the newest checkpoint: %+v", rep)
	}
	p = run(1000, 1100)
	p.Close()
	rep = verify()
	if rep.Ok() || !strings.Contains(strings.Join(rep.Partitions[0].Problems, "\n"), "not on the signed chain") {
		t.Fatalf("a forged record inside the covered range: %+v", rep)
	}

	// Both topics deleted: without checkpoints nothing is proven; the
	// anchor kept elsewhere says records existed.
	anchor := p.Checkpoints()
	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.DeleteTopics(topic, audit.CheckpointTopic(topic)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if rep := verify(); rep.Ok() || !strings.Contains(strings.Join(rep.Problems, "\n"), "no signed checkpoint") {
		t.Fatalf("deleted topics, no anchor: %+v", rep)
	}
	rep, err = audit.VerifySigned(context.Background(), audit.SignedOptions{Kafka: audit.PlainKafka(addr), Topic: topic, Keys: []ed25519.PublicKey{pub}, Anchor: anchor})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rep.Problems, "\n")
	for _, sp := range rep.Partitions {
		all += strings.Join(sp.Problems, "\n")
	}
	if rep.Ok() || !strings.Contains(all, "deleted") {
		t.Fatalf("deleted topics, with the anchor: %+v", rep)
	}
	// A tampered anchor is refused by its signature.
	anchor[0].Count++
	rep, _ = audit.VerifySigned(context.Background(), audit.SignedOptions{Kafka: audit.PlainKafka(addr), Topic: topic, Keys: []ed25519.PublicKey{pub}, Anchor: anchor[:1]})
	if rep.Ok() || !strings.Contains(strings.Join(rep.Problems, "\n"), "anchor checkpoint 1: a checkpoint not signed") {
		t.Fatalf("a tampered anchor: %+v", rep)
	}
}
