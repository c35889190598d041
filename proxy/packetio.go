package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// MySQL packets carry at most this many payload bytes; a longer payload
// continues in the next packet.
const maxPacketPayload = 1<<24 - 1

const (
	readBufferSize  = 32 << 10
	writeBufferSize = 32 << 10
	// headBytes is how much of a forwarded packet's payload is kept for
	// inspection: enough for any OK, EOF or ERR packet a server sends.
	headBytes = 1024
)

// ErrPacketTooLarge means a peer sent a command larger than allowed.
var ErrPacketTooLarge = errors.New("packet larger than max_allowed_packet")

// errPartialPacket means a forward failed after part of a packet was
// written: the destination's stream is no longer in step.
var errPartialPacket = errors.New("packet forwarded in part")

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}
)

// PacketIO moves MySQL packets over one connection. It only moves bytes: it
// frames, reassembles split payloads and forwards packets without decoding
// them. It is not safe for concurrent use.
type PacketIO struct {
	conn net.Conn
	// sock is conn's raw reader and writer, nil when conn is not a socket
	// or runs TLS.
	sock *sockIO
	r    *bufio.Reader
	w    *bufio.Writer
	seq  uint8
	// payload holds the last logical packet read by ReadPacket.
	payload []byte
	// head holds the first bytes of the last forwarded packet.
	head [headBytes]byte
	// maxPayload bounds ReadPacket; 0 means no bound.
	maxPayload int
	// tee, when set, also receives every byte ForwardPacket moves (a
	// checksum of the rows a transaction read, for transaction replay).
	tee io.Writer
	// rhdr and whdr hold the header of a packet being read or written: in
	// a local, a header escapes through the reader and writer interfaces,
	// an allocation per packet.
	rhdr, whdr [4]byte
}

// NewPacketIO wraps conn with pooled buffers; Close returns them.
func NewPacketIO(conn net.Conn) *PacketIO {
	rw := newSockIO(conn)
	r := readerPool.Get().(*bufio.Reader)
	r.Reset(rw)
	w := writerPool.Get().(*bufio.Writer)
	w.Reset(rw)
	sock, _ := rw.(*sockIO)
	return &PacketIO{conn: conn, sock: sock, r: r, w: w}
}

// StartTLS moves the connection onto TLS: handshake gets the connection
// (with any bytes already read, such as a client's hello sent right after
// its SSL request) and returns the TLS connection over it, handshake done.
func (p *PacketIO) StartTLS(handshake func(net.Conn) (net.Conn, error)) error {
	if p.w.Buffered() > 0 {
		return fmt.Errorf("%w: unsent data before the TLS handshake", errMalformed)
	}
	raw := net.Conn(p.conn)
	if n := p.r.Buffered(); n > 0 {
		early, _ := p.r.Peek(n)
		raw = &prefixConn{Conn: p.conn, r: io.MultiReader(bytes.NewReader(bytes.Clone(early)), p.conn)}
	}
	conn, err := handshake(raw)
	if err != nil {
		return err
	}
	p.conn, p.sock = conn, nil
	p.r.Reset(conn)
	p.w.Reset(conn)
	return nil
}

// prefixConn reads bytes already taken from a connection before the rest.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// Conn is the underlying connection.
func (p *PacketIO) Conn() net.Conn { return p.conn }

// SetMaxPayload bounds the logical packets ReadPacket accepts.
func (p *PacketIO) SetMaxPayload(n int) { p.maxPayload = n }

// ResetSequence starts a new command: the next packet has sequence id 0.
func (p *PacketIO) ResetSequence() { p.seq = 0 }

// Sequence is the sequence id the next packet will carry.
func (p *PacketIO) Sequence() uint8 { return p.seq }

// SetSequence sets the sequence id of the next packet.
func (p *PacketIO) SetSequence(s uint8) { p.seq = s }

// ReadPacket reads one logical packet, joining split payloads. The returned
// slice is valid until the next read.
func (p *PacketIO) ReadPacket() ([]byte, error) {
	p.shrink()
	p.payload = p.payload[:0]
	for {
		hdr := p.rhdr[:]
		if _, err := io.ReadFull(p.r, hdr); err != nil {
			return nil, err
		}
		n := int(uint32(hdr[0]) | uint32(hdr[1])<<8 | uint32(hdr[2])<<16)
		p.seq = hdr[3] + 1
		if p.maxPayload > 0 && len(p.payload)+n > p.maxPayload {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrPacketTooLarge, p.maxPayload)
		}
		start := len(p.payload)
		p.payload = grow(p.payload, n)
		if _, err := io.ReadFull(p.r, p.payload[start:start+n]); err != nil {
			return nil, unexpectedEOF(err)
		}
		if n < maxPacketPayload {
			break
		}
	}
	return p.payload, nil
}

// shrink lets go of a buffer grown for one huge packet, so an idle session
// keeps little memory.
func (p *PacketIO) shrink() {
	if cap(p.payload) > 1<<20 {
		p.payload = nil
	}
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, max(2*cap(b), len(b)+n, 256))
	copy(nb, b)
	return nb
}

// WritePacket buffers payload as one logical packet, splitting it when it
// exceeds the maximum packet size. Call Flush to send.
func (p *PacketIO) WritePacket(payload []byte) error {
	for {
		n := min(len(payload), maxPacketPayload)
		p.whdr = [4]byte{byte(n), byte(n >> 8), byte(n >> 16), p.seq}
		p.seq++
		if _, err := p.w.Write(p.whdr[:]); err != nil {
			return err
		}
		if _, err := p.w.Write(payload[:n]); err != nil {
			return err
		}
		payload = payload[n:]
		if n < maxPacketPayload {
			return nil
		}
	}
}

// Flush sends buffered packets.
func (p *PacketIO) Flush() error { return p.w.Flush() }

// Send writes payload as the next packet and flushes it.
func (p *PacketIO) Send(payload []byte) error {
	if err := p.WritePacket(payload); err != nil {
		return err
	}
	return p.w.Flush()
}

// SendError sends e as an ERR packet.
func (p *PacketIO) SendError(e *SQLError) error { return p.Send(errPacket(e)) }

// SendCommand sends payload as a new command: its sequence starts at 0.
func (p *PacketIO) SendCommand(payload []byte) error {
	p.seq = 0
	return p.Send(payload)
}

// FlushAwait sends buffered packets, a command whose answer the caller
// reads next, and returns once that answer starts to arrive (or the
// connection fails, or its read deadline passes). Only for a peer that
// sends nothing unasked, a server: a client may pipeline its next command,
// and bytes that came before the send would not end the wait.
func (p *PacketIO) FlushAwait() error {
	if p.sock == nil || p.r.Buffered() > 0 {
		return p.w.Flush()
	}
	p.sock.awaitAnswer = true
	err := p.w.Flush()
	p.sock.awaitAnswer = false // when there was nothing to send
	return err
}

// WaitReadable waits up to d for bytes to read, and reports whether any
// came; a read deadline set before is cleared.
func (p *PacketIO) WaitReadable(d time.Duration) (bool, error) {
	if p.r.Buffered() > 0 {
		return true, nil
	}
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	_, err := p.r.Peek(1)
	_ = p.conn.SetReadDeadline(time.Time{})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return false, nil
	}
	return false, err
}

// Buffered reports whether more received bytes wait in the read buffer;
// callers flush their writes only when it is false, to coalesce writes.
func (p *PacketIO) Buffered() bool { return p.r.Buffered() > 0 }

// Packet describes one physical packet forwarded by ForwardPacket.
type Packet struct {
	// Length is the payload length of this physical packet.
	Length int
	// Head is the start of the payload (at most headBytes), valid until the
	// next forward on the same PacketIO.
	Head []byte
}

// Continues reports whether the next physical packet continues this payload.
func (pk Packet) Continues() bool { return pk.Length == maxPacketPayload }

// ForwardPacket copies one physical packet, header included, from p to dst
// without decoding it, keeping the sequence id, and returns the start of its
// payload for inspection.
func (p *PacketIO) ForwardPacket(dst *PacketIO) (Packet, error) {
	hdr, err := p.r.Peek(4)
	if err != nil {
		return Packet{}, err
	}
	n := int(uint32(hdr[0]) | uint32(hdr[1])<<8 | uint32(hdr[2])<<16)
	seq := hdr[3]
	headLen := min(n, headBytes)
	b, err := p.r.Peek(4 + headLen)
	if err != nil {
		return Packet{}, unexpectedEOF(err)
	}
	copy(p.head[:headLen], b[4:])
	if err := copyN(dst.w, p.r, 4+n, p.tee); err != nil {
		return Packet{}, fmt.Errorf("%w: %w", errPartialPacket, err)
	}
	p.seq = seq + 1
	dst.seq = seq + 1
	return Packet{Length: n, Head: p.head[:headLen]}, nil
}

// peekNext returns the payload length and first byte of the next packet
// without consuming it.
func (p *PacketIO) peekNext() (length int, first byte, err error) {
	b, err := p.r.Peek(5)
	if err != nil {
		return 0, 0, unexpectedEOF(err)
	}
	return int(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16), b[4], nil
}

// peekErrCode returns the error code of the next packet when it is an ERR
// packet, without consuming it.
func (p *PacketIO) peekErrCode() (code uint16, ok bool, err error) {
	if _, first, err := p.peekNext(); err != nil || first != 0xff { // not an ERR packet
		return 0, false, err
	}
	// An ERR payload holds at least its header byte and the code; only then
	// are 7 bytes sure to come without the peer waiting for us.
	b, err := p.r.Peek(7)
	if err != nil {
		return 0, false, unexpectedEOF(err)
	}
	return uint16(b[5]) | uint16(b[6])<<8, true, nil
}

// copyN copies n bytes from r to w (and tee, if not nil) through r's
// buffer, without allocating.
func copyN(w *bufio.Writer, r *bufio.Reader, n int, tee io.Writer) error {
	for n > 0 {
		b, err := r.Peek(min(n, r.Size()))
		if len(b) == 0 && err != nil {
			return unexpectedEOF(err)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		if tee != nil {
			_, _ = tee.Write(b)
		}
		_, _ = r.Discard(len(b))
		n -= len(b)
	}
	return nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close closes the connection and returns the buffers to their pools. Only
// the goroutine that reads and writes p may call it; others close Conn().
func (p *PacketIO) Close() error {
	err := p.conn.Close()
	if p.r != nil {
		p.r.Reset(nil)
		readerPool.Put(p.r)
		p.w.Reset(nil)
		writerPool.Put(p.w)
		p.r, p.w = nil, nil
	}
	return err
}
