package faulttest

import (
	"bytes"
	bin "encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	gmysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/packet"
)

// rawClient speaks the client side of the MySQL protocol by hand (with
// go-mysql's packet framing), so tests can send what no well-behaved
// client library would.
type rawClient struct {
	conn     net.Conn
	pc       *packet.Conn
	scramble []byte
	plugin   string // the server's default auth plugin
}

// rawCaps is what rawClient announces: protocol 4.1 with plugin auth and
// 1-byte auth response lengths, classic EOF packets, no TLS.
const rawCaps = gmysql.CLIENT_PROTOCOL_41 | gmysql.CLIENT_SECURE_CONNECTION | gmysql.CLIENT_PLUGIN_AUTH |
	gmysql.CLIENT_LONG_PASSWORD | gmysql.CLIENT_TRANSACTIONS | gmysql.CLIENT_CONNECT_WITH_DB

// dialRaw connects and reads the server greeting.
func dialRaw(addr string) (*rawClient, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := &rawClient{conn: c, pc: packet.NewConn(c)}
	greet, err := r.pc.ReadPacket()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	if err := r.parseGreeting(greet); err != nil {
		c.Close()
		return nil, err
	}
	return r, nil
}

func (r *rawClient) parseGreeting(b []byte) error {
	if len(b) < 1 || b[0] != 10 {
		return fmt.Errorf("greeting: protocol %v", b[:min(len(b), 1)])
	}
	i := bytes.IndexByte(b[1:], 0)
	if i < 0 {
		return errors.New("greeting: version not terminated")
	}
	p := b[1+i+1:]
	if len(p) < 4+8+1+2+1+2+2+1+10 {
		return errors.New("greeting: too short")
	}
	p = p[4:] // connection id
	r.scramble = append([]byte(nil), p[:8]...)
	p = p[8+1+2+1+2+2:]
	authLen := int(p[0])
	p = p[1+10:]
	n := max(13, authLen-8)
	if len(p) < n {
		return errors.New("greeting: scramble too short")
	}
	r.scramble = append(r.scramble, p[:n-1]...) // drop the NUL
	p = p[n:]
	if j := bytes.IndexByte(p, 0); j >= 0 {
		r.plugin = string(p[:j])
	}
	return nil
}

// write sends one packet with the next sequence number.
func (r *rawClient) write(payload []byte) error {
	return r.pc.WritePacket(append(make([]byte, 4, 4+len(payload)), payload...))
}

func (r *rawClient) read() ([]byte, error) { return r.pc.ReadPacket() }

func (r *rawClient) close() { r.conn.Close() }

// handshakeResponse builds a HandshakeResponse41 with a 1-byte auth length.
func handshakeResponse(caps uint32, user string, auth []byte, db, plugin string) []byte {
	b := bin.LittleEndian.AppendUint32(nil, caps)
	b = bin.LittleEndian.AppendUint32(b, 1<<24)
	b = append(b, 45) // utf8mb4_general_ci
	b = append(b, make([]byte, 23)...)
	b = append(b, user...)
	b = append(b, 0)
	b = append(b, byte(len(auth)))
	b = append(b, auth...)
	if caps&gmysql.CLIENT_CONNECT_WITH_DB != 0 {
		b = append(b, db...)
		b = append(b, 0)
	}
	if caps&gmysql.CLIENT_PLUGIN_AUTH != 0 {
		b = append(b, plugin...)
		b = append(b, 0)
	}
	return b
}

// nativeReply is mysql_native_password's answer to scramble.
func nativeReply(scramble []byte, password string) []byte {
	if password == "" {
		return nil
	}
	return gmysql.CalcNativePassword(scramble, []byte(password))
}

// sqlErr is an ERR packet.
type sqlErr struct {
	code uint16
	msg  string
}

func (e *sqlErr) Error() string { return fmt.Sprintf("ERROR %d: %s", e.code, e.msg) }

// outcome reads the answer to an authentication step: (nil, nil) for OK,
// an *sqlErr for ERR, and the request itself for an auth switch (0xfe).
func (r *rawClient) outcome() (switchReq []byte, err error) {
	b, err := r.read()
	if err != nil {
		return nil, err
	}
	switch {
	case len(b) > 0 && b[0] == gmysql.OK_HEADER:
		return nil, nil
	case len(b) > 0 && b[0] == gmysql.ERR_HEADER:
		return nil, parseErrPacket(b)
	case len(b) > 0 && b[0] == gmysql.EOF_HEADER:
		return b, nil
	}
	return nil, fmt.Errorf("unexpected packet %x", b[:min(len(b), 16)])
}

func parseErrPacket(b []byte) *sqlErr {
	e := &sqlErr{}
	if len(b) >= 3 {
		e.code = bin.LittleEndian.Uint16(b[1:])
		msg := b[3:]
		if len(msg) > 0 && msg[0] == '#' && len(msg) >= 6 {
			msg = msg[6:]
		}
		e.msg = string(msg)
	}
	return e
}

// login authenticates with mysql_native_password.
func (r *rawClient) login(user, password, db string) error {
	if err := r.write(handshakeResponse(rawCaps, user, nativeReply(r.scramble, password), db, gmysql.AUTH_NATIVE_PASSWORD)); err != nil {
		return err
	}
	sw, err := r.outcome()
	if err == nil && sw != nil {
		return fmt.Errorf("unexpected auth switch request %q", sw)
	}
	return err
}

// query runs a text query and returns its rows as strings (NULL as "").
func (r *rawClient) query(q string) ([][]string, error) {
	r.pc.ResetSequence()
	if err := r.write(append([]byte{gmysql.COM_QUERY}, q...)); err != nil {
		return nil, err
	}
	b, err := r.read()
	if err != nil {
		return nil, err
	}
	switch b[0] {
	case gmysql.OK_HEADER:
		return nil, nil
	case gmysql.ERR_HEADER:
		return nil, parseErrPacket(b)
	}
	cols, _, _ := gmysql.LengthEncodedInt(b)
	for i := uint64(0); i < cols; i++ {
		if _, err := r.read(); err != nil {
			return nil, err
		}
	}
	if _, err := r.read(); err != nil { // EOF after the column definitions
		return nil, err
	}
	var rows [][]string
	for i := 0; i < 10000; i++ {
		b, err := r.read()
		if err != nil {
			return nil, err
		}
		if b[0] == gmysql.EOF_HEADER && len(b) < 9 {
			return rows, nil
		}
		if b[0] == gmysql.ERR_HEADER {
			return nil, parseErrPacket(b)
		}
		var row []string
		for p := b; len(p) > 0; {
			if p[0] == 0xfb {
				row = append(row, "")
				p = p[1:]
				continue
			}
			v, _, n, err := gmysql.LengthEncodedString(p)
			if err != nil {
				return nil, err
			}
			row = append(row, string(v))
			p = p[n:]
		}
		rows = append(rows, row)
	}
	return nil, errors.New("result too long")
}

// changeUser sends COM_CHANGE_USER and returns the outcome.
func (r *rawClient) changeUser(user string, auth []byte, db, plugin string) (switchReq []byte, err error) {
	r.pc.ResetSequence()
	b := []byte{gmysql.COM_CHANGE_USER}
	b = append(b, user...)
	b = append(b, 0, byte(len(auth)))
	b = append(b, auth...)
	b = append(b, db...)
	b = append(b, 0, 45, 0) // database, collation utf8mb4_general_ci
	b = append(b, plugin...)
	b = append(b, 0)
	if err := r.write(b); err != nil {
		return nil, err
	}
	return r.outcome()
}
