package logbroker

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Environment of a broker run as a child process by TestCrashSIGKILL.
const (
	envChildDataDir = "LOGBROKER_CHILD_DATA_DIR"
	envChildListen  = "LOGBROKER_CHILD_LISTEN"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envChildDataDir); dir != "" {
		runChildBroker(dir, os.Getenv(envChildListen))
		return
	}
	os.Exit(m.Run())
}

// runChildBroker serves a broker until the process is killed, printing
// "ADDR host:port" once it listens.
func runChildBroker(dir, listen string) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := New(Config{DataDir: dir, Partitions: 1}, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child New:", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child listen:", err)
		os.Exit(2)
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	if err := b.Serve(context.Background(), ln); err != nil {
		fmt.Fprintln(os.Stderr, "child serve:", err)
		os.Exit(2)
	}
}

// startChild runs the test binary as a broker and returns the process and
// its address.
func startChild(t *testing.T, dir, listen string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildDataDir+"="+dir, envChildListen+"="+listen)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addrCh <- a
			}
		}
		close(addrCh)
	}()
	select {
	case a, ok := <-addrCh:
		if !ok {
			t.Fatal("child broker exited before listening")
		}
		return cmd, a
	case <-time.After(30 * time.Second):
		t.Fatal("child broker did not start within 30s")
	}
	return nil, ""
}

// TestCrashSIGKILL kills the broker process while an idempotent producer
// with acks=all writes numbered records, restarts it on the same data dir and
// address, lets the producer finish, and checks that every record is there
// exactly once and in order.
func TestCrashSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subprocesses")
	}
	dir := t.TempDir()
	child, addr := startChild(t, dir, "127.0.0.1:0")
	const topic, total, killAfter = "audit.crash", 100000, 5000

	prod := newFranzClient(t, addr,
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(time.Millisecond),
		kgo.ProducerBatchMaxBytes(16<<10), // many small batches in flight
		kgo.RetryTimeout(60*time.Second),
	)
	var mu sync.Mutex
	acked := make(map[int]bool)
	var produceErr error
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ackedCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < total; i++ {
			wg.Add(1)
			prod.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(r *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if produceErr == nil {
						produceErr = err
					}
					return
				}
				acked[i] = true
			})
		}
	}()
	// Kill while records are still being produced and acknowledged.
	waitFor(t, 30*time.Second, "acks before kill", func() bool { return ackedCount() >= killAfter })
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	atKill := ackedCount()
	t.Logf("SIGKILL with %d of %d records acknowledged", atKill, total)
	if atKill == total {
		t.Fatalf("producer finished before the kill; the test proves nothing")
	}
	startChild(t, dir, addr)
	<-produced
	wg.Wait()
	if produceErr != nil {
		t.Fatalf("produce: %v", produceErr)
	}
	if len(acked) != total {
		t.Fatalf("%d of %d records acknowledged", len(acked), total)
	}

	cons := newFranzClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	recs := consumeN(t, cons, total, 60*time.Second)
	for i, r := range recs {
		if string(r.Value) != strconv.Itoa(i) {
			t.Fatalf("record at offset %d is %q, want %d (duplicate or loss)", r.Offset, r.Value, i)
		}
	}
	if len(recs) != total {
		t.Fatalf("read %d records, want %d", len(recs), total)
	}
}
