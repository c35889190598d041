package logbroker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// apiRange is the inclusive range of versions served for one API key.
type apiRange struct{ min, max int16 }

// supportedAPIs is what ApiVersions advertises and the only requests served.
// The ceilings are chosen so that no request needs topic ids (Fetch 13,
// Metadata 10), leader epochs (OffsetForLeaderEpoch) or transactions.
var supportedAPIs = map[int16]apiRange{
	kmsg.Produce.Int16():                 {3, 9},
	kmsg.Fetch.Int16():                   {4, 12},
	kmsg.ListOffsets.Int16():             {1, 6},
	kmsg.Metadata.Int16():                {0, 9},
	kmsg.OffsetCommit.Int16():            {2, 8},
	kmsg.OffsetFetch.Int16():             {1, 7},
	kmsg.FindCoordinator.Int16():         {0, 3},
	kmsg.JoinGroup.Int16():               {0, 7},
	kmsg.Heartbeat.Int16():               {0, 4},
	kmsg.LeaveGroup.Int16():              {0, 4},
	kmsg.SyncGroup.Int16():               {0, 5},
	kmsg.DescribeGroups.Int16():          {0, 5},
	kmsg.ListGroups.Int16():              {0, 4},
	kmsg.ApiVersions.Int16():             {0, 3},
	kmsg.CreateTopics.Int16():            {0, 5},
	kmsg.DeleteTopics.Int16():            {0, 5},
	kmsg.InitProducerID.Int16():          {0, 4},
	kmsg.DescribeConfigs.Int16():         {0, 4},
	kmsg.SASLHandshake.Int16():           {0, 1},
	kmsg.SASLAuthenticate.Int16():        {0, 2},
	kmsg.DescribeACLs.Int16():            {0, 3},
	kmsg.DeleteRecords.Int16():           {0, 2},
	kmsg.IncrementalAlterConfigs.Int16(): {0, 1},
}

// pendingResponse is a request that has been handled, in the order it was
// read, waiting to be written back.
type pendingResponse struct {
	correlationID int32
	flexible      bool // response header carries a tag section
	resp          kmsg.Response
	// round, when set, must be flushed to disk before resp is sent;
	// onSyncErr then rewrites resp's error codes if the flush failed.
	round     *syncRound
	onSyncErr func(error)
	// raw is a response already encoded without its size prefix.
	raw []byte
	// noHeader sends raw as a bare size-prefixed frame: a SASL token
	// after SaslHandshake v0.
	noHeader bool
	// closeAfter ends the connection once resp is sent (a failed
	// authentication), logging closeReason.
	closeAfter  bool
	closeReason string
}

// errCloseConn ends a connection whose request cannot be answered in a
// format the client will understand.
type errCloseConn struct{ reason string }

func (e errCloseConn) Error() string { return e.reason }

// serveConn reads requests on one connection and answers them in order.
// Requests are handled one at a time by the reading goroutine, as Kafka
// does; a separate writer goroutine lets produce requests that wait for
// their fsync pipeline behind each other, up to MaxInFlightPerConn.
func (b *Broker) serveConn(ctx context.Context, c net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.stopCtx, cancel)
	defer stop()
	log := b.log.With("remote", c.RemoteAddr().String())
	cs, c, err := b.openConn(ctx, c)
	if err != nil {
		c.Close()
		b.counters.refused.Add(1)
		log.Warn("refusing kafka connection", "reason", err)
		return
	}

	queue := make(chan *pendingResponse, b.cfg.MaxInFlightPerConn)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		b.writeResponses(ctx, c, cs.batch, queue, log)
		cancel()
		c.Close() // unblocks the reader
	}()

	err = b.readRequests(ctx, c, cs, queue)
	close(queue)
	<-writerDone
	c.Close()
	var closeErr errCloseConn
	switch {
	case errors.As(err, &closeErr):
		log.Warn("closing kafka connection", "reason", closeErr.reason)
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil:
		log.Debug("kafka connection ended", "err", err)
	}
}

func (b *Broker) readRequests(ctx context.Context, c net.Conn, cs *connState, queue chan<- *pendingResponse) error {
	r := bufio.NewReaderSize(c, 64<<10)
	var sizeBuf [4]byte
	for {
		if _, err := io.ReadFull(r, sizeBuf[:]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return errCloseConn{fmt.Sprintf("no SASL authentication within %s", authTimeout)}
			}
			return err
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		minSize, maxSize, limit := int32(8), b.cfg.MaxRequestBytes, "broker.max_request_bytes"
		if cs.sasl.raw {
			minSize = 0 // a raw SASL token (SaslHandshake v0)
		}
		if cs.needSASL {
			// Before authentication a client gets no more memory than the
			// SASL exchange needs, as Kafka's sasl.server.max.receive.size.
			maxSize, limit = preAuthMaxRequest, "before SASL authentication"
		}
		if size < minSize || size > maxSize {
			return errCloseConn{fmt.Sprintf("request size %d outside %d..%d (%s)", size, minSize, maxSize, limit)}
		}
		// A fresh buffer per request: kmsg keeps slices of it (record
		// batches) that live until the request is fully handled.
		frame := make([]byte, size)
		if _, err := io.ReadFull(r, frame); err != nil {
			return err
		}
		var pr *pendingResponse
		var err error
		if cs.sasl.raw {
			pr, err = b.handleRawSASL(cs, frame)
		} else {
			pr, err = b.handleFrame(ctx, frame, cs)
		}
		if err != nil {
			return err
		}
		if pr == nil {
			continue // acks=0 produce: no response at all
		}
		select {
		case queue <- pr:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// requestHeader is the part of a request frame before the body.
type requestHeader struct {
	key, version  int16
	correlationID int32
	clientID      *string
}

// parseRequestHeader decodes key, version, correlation id and client id.
func parseRequestHeader(frame []byte) (requestHeader, []byte, error) {
	var h requestHeader
	if len(frame) < 10 {
		return h, nil, errCloseConn{"truncated request header"}
	}
	h.key = int16(binary.BigEndian.Uint16(frame[0:]))
	h.version = int16(binary.BigEndian.Uint16(frame[2:]))
	h.correlationID = int32(binary.BigEndian.Uint32(frame[4:]))
	n := int16(binary.BigEndian.Uint16(frame[8:]))
	rest := frame[10:]
	if n >= 0 {
		if int(n) > len(rest) {
			return h, nil, errCloseConn{"truncated client id"}
		}
		s := string(rest[:n])
		h.clientID = &s
		rest = rest[n:]
	} else if n != -1 {
		return h, nil, errCloseConn{"invalid client id length"}
	}
	return h, rest, nil
}

// skipTags skips a tagged-field section (KIP-482).
func skipTags(b []byte) ([]byte, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errCloseConn{"malformed tagged fields"}
	}
	b = b[n:]
	for i := uint64(0); i < count; i++ {
		if _, n = binary.Uvarint(b); n <= 0 {
			return nil, errCloseConn{"malformed tagged fields"}
		}
		b = b[n:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) {
			return nil, errCloseConn{"malformed tagged fields"}
		}
		b = b[n+int(size):]
	}
	return b, nil
}

// decodeRequest parses a frame into its header and request. A nil request
// with a nil error is an ApiVersions request of an unsupported version,
// which is answered by handleFrame in v0 format.
func decodeRequest(frame []byte) (requestHeader, kmsg.Request, error) {
	h, body, err := parseRequestHeader(frame)
	if err != nil {
		return h, nil, err
	}
	vr, known := supportedAPIs[h.key]
	req := kmsg.RequestForKey(h.key)
	if !known || req == nil {
		return h, nil, errCloseConn{fmt.Sprintf("unsupported api key %d (%s)", h.key, kmsg.NameForKey(h.key))}
	}
	if h.version < vr.min || h.version > vr.max {
		if h.key == kmsg.ApiVersions.Int16() {
			return h, nil, nil
		}
		return h, nil, errCloseConn{fmt.Sprintf("unsupported version %d of %s (serving %d-%d)", h.version, kmsg.NameForKey(h.key), vr.min, vr.max)}
	}
	req.SetVersion(h.version)
	if req.IsFlexible() {
		if body, err = skipTags(body); err != nil {
			return h, nil, err
		}
	}
	if err := req.ReadFrom(body); err != nil {
		return h, nil, errCloseConn{fmt.Sprintf("malformed %s v%d request: %v", kmsg.NameForKey(h.key), h.version, err)}
	}
	return h, req, nil
}

// handleFrame decodes one request and handles it.
func (b *Broker) handleFrame(ctx context.Context, frame []byte, cs *connState) (*pendingResponse, error) {
	h, req, err := decodeRequest(frame)
	if err != nil {
		return nil, err
	}
	b.counters.countRequest(h.key)
	if err := cs.admit(h.key, time.Now()); err != nil {
		return nil, err
	}
	if req == nil {
		// KIP-511: answer in v0 format so any client can read the
		// ranges and retry with a version both sides know.
		resp := b.apiVersionsResponse(0)
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		return &pendingResponse{correlationID: h.correlationID, resp: resp}, nil
	}
	pr, err := b.dispatch(ctx, req, h, cs)
	if err != nil || pr == nil {
		return nil, err
	}
	pr.correlationID = h.correlationID
	// ApiVersions responses never carry header tags, so that a client can
	// parse them before it knows which versions are flexible.
	pr.flexible = req.IsFlexible() && h.key != kmsg.ApiVersions.Int16()
	if pr.resp != nil {
		pr.resp.SetVersion(h.version)
	}
	return pr, nil
}

// writeResponses writes handled requests back in order.
// batch, when set, is the coalescing layer under c's TLS.
func (b *Broker) writeResponses(ctx context.Context, c net.Conn, batch *coalescingConn, queue <-chan *pendingResponse, log interface{ Warn(string, ...any) }) {
	var buf []byte
	for pr := range queue {
		if pr.noHeader {
			buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(pr.raw)))
			buf = append(buf, pr.raw...)
			if _, err := c.Write(buf); err != nil {
				return
			}
			continue
		}
		if pr.round != nil {
			if err := pr.round.wait(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				log.Warn("fsync failed; failing produce", "err", err)
				pr.onSyncErr(err)
			}
		}
		buf = append(buf[:0], 0, 0, 0, 0)
		buf = binary.BigEndian.AppendUint32(buf, uint32(pr.correlationID))
		if pr.flexible {
			buf = append(buf, 0)
		}
		if pr.raw != nil {
			buf = append(buf, pr.raw...)
		} else {
			buf = pr.resp.AppendTo(buf)
		}
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
		if batch != nil && len(buf) > coalescedBytes {
			batch.begin()
			_, err := c.Write(buf)
			if err = errors.Join(err, batch.end()); err != nil {
				return
			}
		} else if _, err := c.Write(buf); err != nil {
			return
		}
		if pr.closeAfter {
			log.Warn("closing kafka connection", "reason", pr.closeReason)
			return
		}
		if cap(buf) > int(b.cfg.MaxFetchBytes)*2 {
			buf = nil // do not keep an outsized buffer per idle connection
		}
	}
}
