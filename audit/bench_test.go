package audit_test

import (
	"io"
	"log/slog"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/logbroker"
)

// BenchmarkProducerLocal is the producer's cost per Genlog-sized record into
// the bundled broker in this process: queueing, sealing the chain, encoding
// the batch and appending it (fsync left to the OS, to measure the CPU).
func BenchmarkProducerLocal(b *testing.B) {
	p := startBenchProducer(b, 100000)
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

// BenchmarkGenlogLocal is Genlog's whole cost per query record with the
// bundled broker, as a session pays it and the producer after: the record
// built, queued, sealed, encoded and appended, its array recycled. The
// queue is sized for batches of 2,500 records, what 200 ms of lingering
// gathers at 12,500 queries a second; cpu-ns/op is the CPU of the whole
// process (both goroutines, and the kernel writing the segments).
func BenchmarkGenlogLocal(b *testing.B) {
	p := startBenchProducer(b, 5000)
	g := audit.NewGenlog(audit.Config{Topic: "bench", Proxy: "sluice-1"}, p)
	sessions := make([]*audit.Session, 64)
	for i := range sessions {
		sessions[i] = &audit.Session{ID: uint32(i + 1), User: "sbtest", Client: "127.0.0.1:51234", DB: "sbtest"}
	}
	q := &audit.Query{Start: time.Now(), Duration: 312 * time.Microsecond, Command: "COM_QUERY", Text: "SELECT c FROM sbtest1 WHERE id=4711",
		Fingerprint: "SELECT c FROM sbtest1 WHERE id=?", Digest: 0x9f86d081884c7d65, Server: "replica1", Route: "replica: read", Rows: 1}
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for i := 0; b.Loop(); i++ {
		g.LogQuery(sessions[i%len(sessions)], q)
	}
	if err := p.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startBenchProducer(b *testing.B, queue int) *audit.Producer {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	br, ln := startBroker(b, logbroker.Config{Partitions: 4, Fsync: logbroker.FsyncOS}, log)
	p, err := audit.NewProducer(audit.ProducerConfig{Kafka: audit.PlainKafka(ln.Addr().String()), Name: "bench", Chain: true, Local: br,
		QueueSize: queue, Block: true}, log)
	if err != nil {
		b.Fatal(err)
	}
	return p
}
