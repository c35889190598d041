package logbroker

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawFrame encodes a request the way a client would, with header v1 or v2.
func rawFrame(req kmsg.Request, correlationID int32) []byte {
	b := make([]byte, 4, 64)
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(correlationID))
	b = binary.BigEndian.AppendUint16(b, 4)
	b = append(b, "test"...)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// roundTrip sends frame on a new connection and returns the response body
// after the correlation id, or an error if the broker closed the connection.
func roundTrip(t *testing.T, addr string, frame []byte) ([]byte, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(frame); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, err
	}
	return body[4:], nil
}

// expectClosed checks the broker closes the connection without answering.
func expectClosed(t *testing.T, addr, what string, frame []byte) {
	t.Helper()
	body, err := roundTrip(t, addr, frame)
	if err == nil {
		t.Fatalf("%s: got a %d-byte response, want the connection closed", what, len(body))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: connection left open (timeout)", what)
	}
}

func TestBadInput(t *testing.T) {
	tb := startBroker(t, Config{Partitions: 1}, "")
	const topic = "audit.robust"
	prod := newFranzClient(t, tb.addr, kgo.DefaultProduceTopic(topic))
	produceNumbered(t, prod, topic, 0, 100)

	// Absurd and negative sizes.
	expectClosed(t, tb.addr, "size 0x7fffffff", []byte{0x7f, 0xff, 0xff, 0xff, 0, 1})
	expectClosed(t, tb.addr, "negative size", []byte{0xff, 0xff, 0xff, 0xf0})
	expectClosed(t, tb.addr, "size smaller than a header", []byte{0, 0, 0, 2, 0, 0})

	// A frame announcing more than it sends, then the client hangs up.
	if c, err := net.Dial("tcp", tb.addr); err == nil {
		c.Write([]byte{0, 0, 0, 100, 0, 18, 0, 0})
		c.Close()
	}

	// Unknown key, unsupported versions, and garbage bodies.
	unknown := rawFrame(kmsg.NewPtrApiVersionsRequest(), 1)
	binary.BigEndian.PutUint16(unknown[4:], 999)
	expectClosed(t, tb.addr, "unknown api key", unknown)

	meta := kmsg.NewPtrMetadataRequest()
	meta.SetVersion(10)
	expectClosed(t, tb.addr, "Metadata v10", rawFrame(meta, 2))

	badProduce := kmsg.NewPtrProduceRequest()
	badProduce.SetVersion(7)
	garbage := rawFrame(badProduce, 3)
	garbage = append(garbage[:4+14], 0xff, 0xff, 0xff, 0x01, 0x02)
	binary.BigEndian.PutUint32(garbage, uint32(len(garbage)-4))
	expectClosed(t, tb.addr, "truncated produce body", garbage)

	badClientID := rawFrame(kmsg.NewPtrApiVersionsRequest(), 4)
	binary.BigEndian.PutUint16(badClientID[12:], 0x7fff)
	expectClosed(t, tb.addr, "client id longer than frame", badClientID)

	// ApiVersions of a future version: v0 answer with UNSUPPORTED_VERSION.
	av := kmsg.NewPtrApiVersionsRequest()
	av.SetVersion(3)
	frame := rawFrame(av, 5)
	binary.BigEndian.PutUint16(frame[6:], 42)
	body, err := roundTrip(t, tb.addr, frame)
	if err != nil {
		t.Fatalf("ApiVersions v42: %v", err)
	}
	avResp := kmsg.NewPtrApiVersionsResponse()
	avResp.SetVersion(0)
	if err := avResp.ReadFrom(body); err != nil {
		t.Fatalf("ApiVersions v42 answer is not v0: %v", err)
	}
	if avResp.ErrorCode != kerr.UnsupportedVersion.Code || len(avResp.ApiKeys) != len(supportedAPIs) {
		t.Fatalf("ApiVersions v42: error %d, %d keys", avResp.ErrorCode, len(avResp.ApiKeys))
	}

	// A produce whose batch fails its CRC is refused with CORRUPT_MESSAGE.
	batch := sampleBatch(t, 3)
	batch[len(batch)-1] ^= 0xff
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(7)
	produce.Acks = -1
	produce.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	produce.Topics = append(produce.Topics, rt)
	body, err = roundTrip(t, tb.addr, rawFrame(produce, 6))
	if err != nil {
		t.Fatalf("corrupt produce: %v", err)
	}
	presp := kmsg.NewPtrProduceResponse()
	presp.SetVersion(7)
	if err := presp.ReadFrom(body); err != nil {
		t.Fatal(err)
	}
	if code := presp.Topics[0].Partitions[0].ErrorCode; code != kerr.CorruptMessage.Code {
		t.Fatalf("corrupt batch: error %d, want CORRUPT_MESSAGE", code)
	}

	// The broker still serves, and the data is intact.
	cons := newFranzClient(t, tb.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	checkNumbered(t, consumeN(t, cons, 100, 30*time.Second), 100)
	if hw := tb.partition(topic, 0).stats().HighWatermark; hw != 100 {
		t.Fatalf("high watermark %d after bad input, want 100", hw)
	}
}

// sampleBatch builds a valid uncompressed RecordBatch v2 of n records, keyed
// "k<i%3>" with value "v<i>".
func sampleBatch(t testing.TB, n int) []byte {
	t.Helper()
	var recs []byte
	for i := 0; i < n; i++ {
		var r []byte
		r = append(r, 0)                       // attributes
		r = binary.AppendVarint(r, 0)          // timestamp delta
		r = binary.AppendVarint(r, int64(i))   // offset delta
		key := []byte("k" + strconv.Itoa(i%3)) //
		r = binary.AppendVarint(r, int64(len(key)))
		r = append(r, key...)
		val := []byte("v" + strconv.Itoa(i))
		r = binary.AppendVarint(r, int64(len(val)))
		r = append(r, val...)
		r = binary.AppendVarint(r, 0) // headers
		recs = binary.AppendVarint(recs, int64(len(r)))
		recs = append(recs, r...)
	}
	return buildBatch(n, recs, time.Now().UnixMilli(), -1, -1, -1)
}

func buildBatch(n int, records []byte, ts, producerID int64, epoch int16, seq int32) []byte {
	b := make([]byte, batchHeaderLen, batchHeaderLen+len(records))
	binary.BigEndian.PutUint32(b[batchOffLength:], uint32(batchHeaderLen-batchLengthPrefix+len(records)))
	b[batchOffMagic] = 2
	binary.BigEndian.PutUint32(b[batchOffLastOffsetDelta:], uint32(n-1))
	binary.BigEndian.PutUint64(b[batchOffBaseTimestamp:], uint64(ts))
	binary.BigEndian.PutUint64(b[batchOffMaxTimestamp:], uint64(ts))
	binary.BigEndian.PutUint64(b[batchOffProducerID:], uint64(producerID))
	binary.BigEndian.PutUint16(b[batchOffProducerEpoch:], uint16(epoch))
	binary.BigEndian.PutUint32(b[batchOffBaseSequence:], uint32(seq))
	binary.BigEndian.PutUint32(b[batchOffNumRecords:], uint32(n))
	b = append(b, records...)
	binary.BigEndian.PutUint32(b[batchOffCRC:], crc32c(b[batchOffAttributes:]))
	return b
}

// TestTornWrite appends half a batch and garbage to the last segment,
// removes its indexes, restarts, and checks the good records are served
// and new ones follow them.
func TestTornWrite(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tail      func(good []byte) []byte
		emptyRoll bool // crash right after rolling: an empty newer segment
	}{
		{"half batch before empty segment", func(good []byte) []byte { return good[:len(good)/2] }, true},
		{"half batch", func(good []byte) []byte { return good[:len(good)/2] }, false},
		{"garbage", func([]byte) []byte { return []byte("\x00\x00\x00\x00\x00\x00\x00\x07garbage after the last batch") }, false},
		{"bad crc", func(good []byte) []byte {
			b := append([]byte(nil), good...)
			binary.BigEndian.PutUint64(b, 1000)
			b[len(b)-2] ^= 0x55
			return b
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tb := startBroker(t, Config{DataDir: dir, Partitions: 1}, "")
			const topic = "audit.torn"
			prod := newFranzClient(t, tb.addr, kgo.DefaultProduceTopic(topic))
			produceNumbered(t, prod, topic, 0, 50)
			prod.Close()
			tb.stop(t)

			segDir := filepath.Join(dir, topic+"-0")
			logPath, indexPath, timePath := segmentPaths(segDir, 0)
			good, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tc.tail(good))
			f.Close()
			os.Remove(indexPath)
			os.WriteFile(timePath, []byte("junk"), 0o644)
			if tc.emptyRoll {
				next, _, _ := segmentPaths(segDir, 50)
				os.WriteFile(next, nil, 0o644)
			}

			tb2 := startBroker(t, Config{DataDir: dir, Partitions: 1}, "")
			if fi, _ := os.Stat(logPath); fi.Size() != int64(len(good)) {
				t.Fatalf("segment is %d bytes after recovery, want %d", fi.Size(), len(good))
			}
			prod2 := newFranzClient(t, tb2.addr, kgo.DefaultProduceTopic(topic))
			produceNumbered(t, prod2, topic, 50, 50)
			cons := newFranzClient(t, tb2.addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			recs := consumeN(t, cons, 100, 30*time.Second)
			checkNumbered(t, recs, 100)
			for i, r := range recs {
				if r.Offset != int64(i) {
					t.Fatalf("record %d at offset %d", i, r.Offset)
				}
			}
		})
	}
}
