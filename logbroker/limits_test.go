package logbroker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// apiVersionsOn sends an ApiVersions request on c and reads the answer.
func apiVersionsOn(c net.Conn, correlationID int32) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(0)
	if _, err := c.Write(rawFrame(req, correlationID)); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return err
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != correlationID {
		return errors.New("wrong correlation id")
	}
	return nil
}

func TestMaxConnections(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	const limit = 4
	tb := startBrokerLog(t, Config{Partitions: 1, MaxConnections: limit}, "", log)

	// Fill every slot; an answered request proves each one is served.
	var held []net.Conn
	for i := 0; i < limit; i++ {
		c, err := net.DialTimeout("tcp", tb.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := apiVersionsOn(c, int32(i)); err != nil {
			t.Fatalf("connection %d within the limit: %v", i, err)
		}
		held = append(held, c)
	}

	// Connections beyond the limit are accepted and closed at once.
	for i := 0; i < 3; i++ {
		c, err := net.DialTimeout("tcp", tb.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection over the limit: read returned %v, want it closed", err)
		}
	}
	if got := tb.rejected.Load(); got != 3 {
		t.Fatalf("rejected %d connections, want 3", got)
	}
	if n := strings.Count(logs.String(), "broker.max_connections reached"); n != 1 {
		t.Fatalf("%d log lines about the limit for 3 rejections, want 1:\n%s", n, logs.String())
	}
	// The held connections were not disturbed.
	for i, c := range held {
		if err := apiVersionsOn(c, int32(100+i)); err != nil {
			t.Fatalf("held connection %d after rejections: %v", i, err)
		}
	}

	// A freed slot is usable again.
	held[0].Close()
	waitFor(t, 10*time.Second, "a slot to be freed", func() bool { return tb.connCount() < limit })
	c, err := net.DialTimeout("tcp", tb.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := apiVersionsOn(c, 200); err != nil {
		t.Fatalf("connection after one closed: %v", err)
	}

	// Once the others close, a real client produces and consumes.
	c.Close()
	for _, c := range held[1:] {
		c.Close()
	}
	waitFor(t, 10*time.Second, "all connections to close", func() bool { return tb.connCount() == 0 })
	const topic = "audit.limits"
	prod := newFranzClient(t, tb.addr, kgo.DefaultProduceTopic(topic))
	produceNumbered(t, prod, topic, 0, 20)
	prod.Close() // a client holds several connections; stay under the limit
	waitFor(t, 10*time.Second, "the producer's connections to close", func() bool { return tb.connCount() == 0 })
	cons := newFranzClient(t, tb.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if got := consumeN(t, cons, 20, 30*time.Second); len(got) != 20 {
		t.Fatalf("consumed %d records, want 20", len(got))
	}
}
