package proxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// streamConn is a net.Conn that reads from a fixed stream and records what
// is written: enough to drive the packet layer in unit tests.
type streamConn struct {
	r io.Reader
	w bytes.Buffer
}

func (c *streamConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *streamConn) Write(b []byte) (int, error)      { return c.w.Write(b) }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// frames encodes payloads as packets with sequence ids from 1.
func frames(payloads ...[]byte) []byte {
	var b []byte
	for i, p := range payloads {
		b = append(b, byte(len(p)), byte(len(p)>>8), byte(len(p)>>16), byte(i+1))
		b = append(b, p...)
	}
	return b
}

func eofPacket(status uint16) []byte {
	return []byte{0xfe, 0, 0, byte(status), byte(status >> 8)}
}

func lenencStr(s string) []byte { return append([]byte{byte(len(s))}, s...) }

func TestRelayResultShapes(t *testing.T) {
	col := append(lenencStr("def"), 0)
	okStatus := func(status uint16) []byte { return okPacket(0, 0, status, 0) }
	deprecatedEOF := func(status uint16) []byte { return append([]byte{0xfe}, okPacket(0, 0, status, 0)[1:]...) }
	cases := []struct {
		name         string
		kind         responseKind
		deprecateEOF bool
		stream       [][]byte
		rows         int64
		status       uint16
		err          uint16
	}{
		{"ok", respResultSets, false, [][]byte{okPacket(3, 7, 2, 0)}, 0, 2, 0},
		{"error", respResultSets, false, [][]byte{errPacket(newSQLError(1146, "no table"))}, 0, 0, 1146},
		{"rows with EOF", respResultSets, false, [][]byte{{1}, col, eofPacket(2), lenencStr("a"), lenencStr("b"), eofPacket(3)}, 2, 3, 0},
		{"rows, DEPRECATE_EOF", respResultSets, true, [][]byte{{1}, col, lenencStr("a"), deprecatedEOF(2)}, 1, 2, 0},
		{"empty, DEPRECATE_EOF", respResultSets, true, [][]byte{{1}, col, deprecatedEOF(0x22)}, 0, 0x22, 0},
		{"two results", respResultSets, false, [][]byte{{1}, col, eofPacket(0), lenencStr("a"), eofPacket(0x0a), okStatus(2)}, 1, 2, 0},
		{"error mid-rows", respResultSets, false, [][]byte{{1}, col, eofPacket(2), lenencStr("a"), errPacket(newSQLError(1317, "interrupted"))}, 1, 2, 1317},
		{"cursor opened", respResultSets, false, [][]byte{{1}, col, eofPacket(0x42)}, 0, 0x42, 0},
		{"fetch", respRows, false, [][]byte{{0, 1}, {0, 2}, eofPacket(0x82)}, 2, 0x82, 0},
		{"field list", respFieldList, true, [][]byte{col, col, deprecatedEOF(2)}, 0, 2, 0},
		{"prepare", respPrepare, false, [][]byte{{0, 1, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0}, col, col, eofPacket(2), col, eofPacket(2)}, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stream := frames(c.stream...)
			backend := NewPacketIO(&streamConn{r: bytes.NewReader(stream)})
			cc := &streamConn{r: bytes.NewReader(nil)}
			client := NewPacketIO(cc)
			r := relay{backend: backend, client: client, deprecateEOF: c.deprecateEOF}
			res, err := r.run(c.kind)
			if err != nil {
				t.Fatal(err)
			}
			if res.Rows != c.rows || res.OK.Status != c.status {
				t.Fatalf("rows %d status %#x, want %d %#x", res.Rows, res.OK.Status, c.rows, c.status)
			}
			if (res.Err == nil) != (c.err == 0) || (res.Err != nil && res.Err.Code != c.err) {
				t.Fatalf("error %v, want code %d", res.Err, c.err)
			}
			if !bytes.Equal(cc.w.Bytes(), stream) {
				t.Fatal("relayed bytes differ from the backend's")
			}
			if c.kind == respPrepare && (res.Prepare.StatementID != 1 || res.Prepare.Params != 2 || res.Prepare.Columns != 1) {
				t.Fatalf("prepare %+v", res.Prepare)
			}
		})
	}
}

func TestSplitPacketsRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, maxPacketPayload - 1, maxPacketPayload, maxPacketPayload + 1, 2 * maxPacketPayload} {
		payload := bytes.Repeat([]byte{7}, size)
		w := &streamConn{}
		out := NewPacketIO(w)
		if err := out.WritePacket(payload); err != nil {
			t.Fatal(err)
		}
		out.Flush()
		in := NewPacketIO(&streamConn{r: bytes.NewReader(w.w.Bytes())})
		got, err := in.ReadPacket()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("size %d: got %d bytes, %v", size, len(got), err)
		}
		if size%maxPacketPayload == 0 && size > 0 && len(w.w.Bytes()) != size+4*(size/maxPacketPayload+1) {
			t.Fatalf("size %d: an exact multiple must end with an empty packet", size)
		}
	}
}

func TestHandshakeResponseRoundTrip(t *testing.T) {
	caps := proxyCapabilities
	b := buildHandshakeResponse(caps, 45, "app", bytes.Repeat([]byte{9}, 20), "db1", []byte{4, 1, 'k', 1, 'v'}, mysql.AUTH_NATIVE_PASSWORD)
	hr, err := parseHandshakeResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	if hr.User != "app" || hr.DB != "db1" || len(hr.AuthResponse) != 20 || hr.Plugin != mysql.AUTH_NATIVE_PASSWORD || len(hr.Attrs) != 5 {
		t.Fatalf("%+v", hr)
	}
}

func TestNativePasswordRelay(t *testing.T) {
	acct := NewConfigAccount("u", "%", "secret")
	scramble := newScramble()
	reply := scrambleReply(scramble, acct.stage1)
	stage1, ok := acct.verify(scramble, reply)
	if !ok || !bytes.Equal(stage1, acct.stage1) {
		t.Fatal("a correct reply did not verify, or did not yield SHA1(password)")
	}
	if _, ok := acct.verify(scramble, scrambleReply(newScramble(), acct.stage1)); ok {
		t.Fatal("a reply to another scramble verified")
	}
	if _, ok := acct.verify(scramble, reply[:19]); ok {
		t.Fatal("a short reply verified")
	}
	if _, ok := acct.verify(scramble, nil); ok {
		t.Fatal("an empty reply verified for an account with a password")
	}
	empty := NewConfigAccount("e", "%", "")
	if _, ok := empty.verify(scramble, reply); ok {
		t.Fatal("a password verified for an account without one")
	}
}

func TestHostMatches(t *testing.T) {
	cases := []struct {
		pattern, ip string
		want        bool
	}{
		{"%", "10.1.2.3", true},
		{"10.1.%", "10.1.2.3", true},
		{"10.1.%", "10.2.2.3", false},
		{"10.1.2._", "10.1.2.3", true},
		{"10.1.2._", "10.1.2.30", false},
		{"127.0.0.1", "127.0.0.1", true},
		{"localhost", "127.0.0.1", true},
		{"localhost", "10.0.0.1", false},
		{"10.0.0.0/255.255.255.0", "10.0.0.77", true},
		{"10.0.0.0/255.255.255.0", "10.0.1.77", false},
	}
	for _, c := range cases {
		if got := hostMatches(c.pattern, c.ip); got != c.want {
			t.Errorf("hostMatches(%q, %q) = %v", c.pattern, c.ip, got)
		}
	}
}

func FuzzParseHandshakeResponse(f *testing.F) {
	f.Add(buildHandshakeResponse(proxyCapabilities, 45, "app", bytes.Repeat([]byte{9}, 20), "db", []byte{0}, mysql.AUTH_NATIVE_PASSWORD))
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseHandshakeResponse(b)
		if len(b) > 0 {
			_, _ = parseChangeUser(b, binary.LittleEndian.Uint32(append(b, 0, 0, 0, 0)))
		}
		_, _ = parseServerHandshake(b)
	})
}

// FuzzRelay feeds arbitrary backend bytes through the packet reader and the
// response relay: they must end with a result or an error, never a panic
// or a hang.
func FuzzRelay(f *testing.F) {
	col := append(lenencStr("def"), 0)
	f.Add(frames([]byte{1}, col, eofPacket(2), lenencStr("a"), eofPacket(2)), byte(0))
	f.Add(frames(okPacket(1, 1, 2, 0)), byte(1))
	f.Add(frames([]byte{0xfb, 'f'}, okPacket(0, 0, 2, 0)), byte(0))
	f.Fuzz(func(t *testing.T, stream []byte, mode byte) {
		backend := NewPacketIO(&streamConn{r: bytes.NewReader(stream)})
		backend.SetMaxPayload(1 << 20)
		client := NewPacketIO(&streamConn{r: bytes.NewReader(frames(nil))})
		r := relay{backend: backend, client: client, deprecateEOF: mode&1 != 0, localInfile: mode&2 != 0}
		_, _ = r.run(responseKind(mode>>2) % (respPrepare + 1))
		for {
			if _, err := backend.ReadPacket(); err != nil {
				break
			}
		}
	})
}

// BenchmarkRelayPointSelect relays a one-row result as oltp_point_select
// gets it: the per-query hot path of the packet layer, without allocations.
func BenchmarkRelayPointSelect(b *testing.B) {
	col := append(lenencStr("def"), bytes.Repeat([]byte{1}, 40)...)
	stream := frames([]byte{1}, col, append([]byte{0xfe}, okPacket(0, 0, 2, 0)[1:]...))
	stream = append(stream[:len(stream):len(stream)], nil...)
	row := frames(lenencStr("some text of a row in sbtest, 120 bytes wide ......................................................"))
	one := append(append([]byte{}, stream[:len(stream)-11]...), row...)
	one = append(one, stream[len(stream)-11:]...)
	src := bytes.NewReader(one)
	backend := NewPacketIO(&streamConn{r: src})
	client := NewPacketIO(&discardConn{})
	r := relay{backend: backend, client: client, deprecateEOF: true}
	b.ReportAllocs()
	b.SetBytes(int64(len(one)))
	for b.Loop() {
		src.Reset(one)
		if _, err := r.run(respResultSets); err != nil {
			b.Fatal(err)
		}
	}
}
