package logbroker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-proxy/sluice/internal/testenv/testpki"
)

// Benchmark bounds: records per run and a time cap per phase.
const (
	benchRecords    = 2_000_000
	benchPhaseLimit = 30 * time.Second
	benchTopic      = "bench.audit"
	benchPartitions = 4
)

// benchValues are ~300-byte JSON audit records; a few variants so that
// batches are not one repeated value.
func benchValues() [][]byte {
	out := make([][]byte, 64)
	for i := range out {
		v := fmt.Sprintf(`{"ts":"2026-11-23T11:05:%02d.123456Z","instance":"sluice-1","user":"app_rw","client":"10.1.2.%d:53122","db":"orders","kind":"query","sql":"UPDATE orders SET status = ? WHERE id = ? AND tenant_id = ?","args":["shipped",%d,42],"rows":1,"duration_us":%d,"server":"primary-a","seq":%d}`,
			i%60, i, 1000000+i, 250+i, i)
		for len(v) < 300 {
			v = v[:len(v)-1] + ` ` + "}"
		}
		out[i] = []byte(v)
	}
	return out
}

// BenchmarkBroker measures one franz-go producer and one consumer against
// this broker (default fsync policy: always, with group commit), the same
// with TLS + SCRAM-SHA-512 + ACLs on, and, in the same run, against kfake
// (in-memory) for reference:
//
//	go test ./logbroker/ -run '^$' -bench BenchmarkBroker -benchtime 1x
func BenchmarkBroker(b *testing.B) {
	b.Run("sluice", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			tb := startBroker(b, Config{Partitions: benchPartitions}, "")
			benchProduceConsume(b, tb.addr)
			tb.stop(b)
		}
	})
	b.Run("sluice-tls-scram", func(b *testing.B) {
		// TLS + SCRAM-SHA-512 + ACLs: the bench principal may read and
		// write the bench topic and use any group.
		dir := b.TempDir()
		if err := testpki.Write(dir); err != nil {
			b.Fatal(err)
		}
		pem, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
		if err != nil {
			b.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		const pass = "bench-password"
		secure := []kgo.Opt{
			kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}),
			kgo.SASL(scram.Auth{User: "bench", Pass: pass}.AsSha512Mechanism()),
		}
		for i := 0; i < b.N; i++ {
			tb := startBroker(b, Config{
				Partitions: benchPartitions,
				TLS:        TLSConfig{Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server-key.pem")},
				SASL:       SASLConfig{Mechanisms: []string{MechScramSHA512}, Users: []SASLUser{{Name: "bench", Password: pass}}},
				ACLs:       []ACL{{Principal: "bench", Operations: []string{"read", "write", "create", "describe"}, Topics: []string{benchTopic}, Groups: []string{"*"}}},
			}, "")
			benchProduceConsume(b, tb.addr, secure...)
			tb.stop(b)
		}
	})
	b.Run("kfake", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(benchPartitions, benchTopic))
			if err != nil {
				b.Fatal(err)
			}
			benchProduceConsume(b, c.ListenAddrs()[0])
			c.Close()
		}
	})
}

// benchProduceConsume produces then consumes benchRecords with one client
// each; opts (TLS, SASL) go to both.
func benchProduceConsume(b *testing.B, addr string, opts ...kgo.Opt) {
	values := benchValues()
	prod, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.DefaultProduceTopic(benchTopic),
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(1 << 20),
		kgo.MaxBufferedRecords(200_000),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()

	ctx, cancel := context.WithTimeout(context.Background(), benchPhaseLimit)
	defer cancel()
	var acked, bytes atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	produced := 0
	for ; produced < benchRecords && ctx.Err() == nil; produced++ {
		wg.Add(1)
		v := values[produced%len(values)]
		prod.Produce(ctx, &kgo.Record{Value: v}, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			acked.Add(1)
			bytes.Add(int64(len(r.Value)))
		})
	}
	wg.Wait()
	produceTime := time.Since(start)
	if p := firstErr.Load(); p != nil && ctx.Err() == nil {
		b.Fatalf("produce: %v", *p)
	}
	n := acked.Load()
	b.ReportMetric(float64(n)/produceTime.Seconds(), "produce_rec/s")
	b.ReportMetric(float64(bytes.Load())/produceTime.Seconds()/1e6, "produce_MB/s")

	cons, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.ConsumeTopics(benchTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64 << 20),
		kgo.FetchMaxPartitionBytes(8 << 20),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), benchPhaseLimit)
	defer ccancel()
	start = time.Now()
	var consumed, consumedBytes int64
	for consumed < n && cctx.Err() == nil {
		fs := cons.PollFetches(cctx)
		for _, e := range fs.Errors() {
			if cctx.Err() == nil {
				b.Fatalf("fetch: %v", e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			consumed++
			consumedBytes += int64(len(r.Value))
		})
	}
	consumeTime := time.Since(start)
	b.ReportMetric(float64(consumed)/consumeTime.Seconds(), "consume_rec/s")
	b.ReportMetric(float64(consumedBytes)/consumeTime.Seconds()/1e6, "consume_MB/s")
	if consumed < n {
		b.Logf("consumed %d of %d records within %s", consumed, n, benchPhaseLimit)
	}
}
