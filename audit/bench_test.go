package audit_test

import (
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/logbroker"
)

// BenchmarkProducerLocal is the producer's cost per Genlog-sized record into
// the bundled broker in this process: queueing, sealing the chain, encoding
// the batch and appending it (fsync left to the OS, to measure the CPU).
func BenchmarkProducerLocal(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	br, ln := startBroker(b, logbroker.Config{Partitions: 4, Fsync: logbroker.FsyncOS}, log)
	p, err := audit.NewProducer(audit.ProducerConfig{Kafka: audit.PlainKafka(ln.Addr().String()), Name: "bench", Chain: true, Local: br,
		QueueSize: 100000, Block: true}, log)
	if err != nil {
		b.Fatal(err)
	}
	// A point select's record, as Genlog writes it.
	record := []byte(`{"type":"query","ts":"2026-11-23T16:33:25.123456Z","session":17,"seq":12345,"user":"sbtest","client":"127.0.0.1:51234",` +
		`"db":"sbtest","proxy":"sluice-1","server":"replica1","command":"COM_QUERY","query":"SELECT c FROM sbtest1 WHERE id=4711",` +
		`"fingerprint":"SELECT c FROM sbtest1 WHERE id=?","digest":"9f86d081884c7d65","duration_us":312,"rows":1,"affected":0,` +
		`"last_insert_id":0,"warnings":0,"error_code":0,"error":"","in_tx":false,"route":"replica: read"}`)
	keys := make([][]byte, 64)
	for i := range keys {
		keys[i] = []byte(strconv.Itoa(i))
	}
	b.SetBytes(int64(len(record)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// Genlog hands over each record: the producer owns it.
		p.Send(audit.Record{Topic: "bench", Key: keys[i%len(keys)], Value: append(make([]byte, 0, len(record)+128), record...)})
	}
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
}
