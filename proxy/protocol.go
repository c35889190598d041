package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// MariaDB's 10.x servers leave CLIENT_LONG_PASSWORD (named CLIENT_MYSQL there)
// unset to announce extended capabilities; Sluice advertises none of those.

// proxyCapabilities are the capabilities Sluice offers clients. SSL is added
// when TLS is configured; compression is not offered.
const proxyCapabilities = mysql.CLIENT_LONG_PASSWORD | mysql.CLIENT_FOUND_ROWS | mysql.CLIENT_LONG_FLAG |
	mysql.CLIENT_CONNECT_WITH_DB | mysql.CLIENT_ODBC | mysql.CLIENT_LOCAL_FILES | mysql.CLIENT_IGNORE_SPACE |
	mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_INTERACTIVE | mysql.CLIENT_IGNORE_SIGPIPE | mysql.CLIENT_TRANSACTIONS |
	mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_MULTI_STATEMENTS | mysql.CLIENT_MULTI_RESULTS |
	mysql.CLIENT_PS_MULTI_RESULTS | mysql.CLIENT_PLUGIN_AUTH | mysql.CLIENT_CONNECT_ATTRS |
	mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | mysql.CLIENT_SESSION_TRACK | mysql.CLIENT_DEPRECATE_EOF

// backendOnlyCapabilities are never passed from a client to a backend: the
// backend link has its own transport.
const backendOnlyCapabilities = mysql.CLIENT_SSL | mysql.CLIENT_COMPRESS | mysql.CLIENT_ZSTD_COMPRESSION_ALGORITHM

const scrambleLen = 20

// defaultCollation is utf8mb4_general_ci, announced until a backend's own is known.
const defaultCollation = 45

// errMalformed reports a packet that does not parse.
var errMalformed = errors.New("malformed packet")

// buildHandshake writes the server's initial handshake (protocol 10).
// plugin is the authentication plugin the scramble is offered for.
func buildHandshake(connID uint32, scramble []byte, version string, caps uint32, collation byte, plugin string) []byte {
	b := make([]byte, 0, 128)
	b = append(b, 10)
	b = append(b, version...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint32(b, connID)
	b = append(b, scramble[:8]...)
	b = append(b, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps))
	b = append(b, collation)
	b = binary.LittleEndian.AppendUint16(b, mysql.SERVER_STATUS_AUTOCOMMIT)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps>>16))
	b = append(b, scrambleLen+1)
	b = append(b, make([]byte, 10)...)
	b = append(b, scramble[8:]...)
	b = append(b, 0)
	b = append(b, plugin...)
	b = append(b, 0)
	return b
}

// HandshakeResponse is a client's HandshakeResponse41.
type HandshakeResponse struct {
	Capabilities uint32
	MaxPacket    uint32
	Collation    byte
	User         string
	AuthResponse []byte
	DB           string
	Plugin       string
	// Attrs is the raw connection attribute block, passed on to backends.
	Attrs []byte
}

// parseHandshakeResponse decodes HandshakeResponse41. It copies what it keeps.
func parseHandshakeResponse(b []byte) (HandshakeResponse, error) {
	var hr HandshakeResponse
	if len(b) < 32 {
		return hr, fmt.Errorf("%w: handshake response of %d bytes", errMalformed, len(b))
	}
	hr.Capabilities = binary.LittleEndian.Uint32(b)
	if hr.Capabilities&mysql.CLIENT_PROTOCOL_41 == 0 {
		return hr, errors.New("client does not speak protocol 4.1")
	}
	hr.MaxPacket = binary.LittleEndian.Uint32(b[4:])
	hr.Collation = b[8]
	rest := b[32:]
	user, rest, ok := cutNul(rest)
	if !ok {
		return hr, fmt.Errorf("%w: user name not terminated", errMalformed)
	}
	hr.User = string(user)
	switch {
	case hr.Capabilities&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0:
		n, size, ok := lengthEncodedInt(rest)
		if !ok || uint64(len(rest)-size) < n {
			return hr, fmt.Errorf("%w: auth response length", errMalformed)
		}
		hr.AuthResponse = bytes.Clone(rest[size : size+int(n)])
		rest = rest[size+int(n):]
	case hr.Capabilities&mysql.CLIENT_SECURE_CONNECTION != 0:
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return hr, fmt.Errorf("%w: auth response length", errMalformed)
		}
		hr.AuthResponse = bytes.Clone(rest[1 : 1+int(rest[0])])
		rest = rest[1+int(rest[0]):]
	default:
		auth, r, ok := cutNul(rest)
		if !ok {
			return hr, fmt.Errorf("%w: auth response not terminated", errMalformed)
		}
		hr.AuthResponse, rest = bytes.Clone(auth), r
	}
	if hr.Capabilities&mysql.CLIENT_CONNECT_WITH_DB != 0 && len(rest) > 0 {
		db, r, ok := cutNul(rest)
		if !ok {
			return hr, fmt.Errorf("%w: database name not terminated", errMalformed)
		}
		hr.DB, rest = string(db), r
	}
	if hr.Capabilities&mysql.CLIENT_PLUGIN_AUTH != 0 && len(rest) > 0 {
		plugin, r, ok := cutNul(rest)
		if !ok {
			// Some old clients omit the terminator on the last field.
			plugin, r = rest, nil
		}
		hr.Plugin, rest = string(plugin), r
	}
	if hr.Capabilities&mysql.CLIENT_CONNECT_ATTRS != 0 && len(rest) > 0 {
		n, size, ok := lengthEncodedInt(rest)
		if !ok || uint64(len(rest)-size) < n {
			return hr, fmt.Errorf("%w: connection attributes length", errMalformed)
		}
		hr.Attrs = bytes.Clone(rest[:size+int(n)])
	}
	return hr, nil
}

func cutNul(b []byte) (before, after []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// ServerHandshake is a backend's initial handshake.
type ServerHandshake struct {
	Version      string
	ConnID       uint32
	Capabilities uint32
	Collation    byte
	Status       uint16
	Scramble     []byte
	Plugin       string
}

func parseServerHandshake(b []byte) (ServerHandshake, error) {
	var h ServerHandshake
	if len(b) > 0 && b[0] == mysql.ERR_HEADER {
		return h, parseErr(b)
	}
	if len(b) < 1 || b[0] != 10 {
		return h, fmt.Errorf("%w: not a protocol 10 handshake", errMalformed)
	}
	version, rest, ok := cutNul(b[1:])
	if !ok || len(rest) < 4+8+1+2 {
		return h, fmt.Errorf("%w: short handshake", errMalformed)
	}
	h.Version = string(version)
	h.ConnID = binary.LittleEndian.Uint32(rest)
	h.Scramble = append(h.Scramble, rest[4:12]...)
	h.Capabilities = uint32(binary.LittleEndian.Uint16(rest[13:]))
	rest = rest[15:]
	if len(rest) < 1+2+2+1+10 {
		return h, nil
	}
	h.Collation = rest[0]
	h.Status = binary.LittleEndian.Uint16(rest[1:])
	h.Capabilities |= uint32(binary.LittleEndian.Uint16(rest[3:])) << 16
	authLen := int(rest[5])
	rest = rest[16:]
	if h.Capabilities&mysql.CLIENT_SECURE_CONNECTION != 0 {
		n := max(13, authLen-8)
		if len(rest) < n {
			return h, fmt.Errorf("%w: short scramble", errMalformed)
		}
		part2 := rest[:n]
		if part2[len(part2)-1] == 0 {
			part2 = part2[:len(part2)-1]
		}
		h.Scramble = append(h.Scramble, part2...)
		rest = rest[n:]
	}
	if h.Capabilities&mysql.CLIENT_PLUGIN_AUTH != 0 {
		plugin, _, ok := cutNul(rest)
		if !ok {
			plugin = rest
		}
		h.Plugin = string(plugin)
	}
	return h, nil
}

// commandPacket builds the command packet of cmd with text: a statement a
// filter rewrote, or one Sluice sends itself.
func commandPacket(cmd byte, text string) []byte {
	pkt := make([]byte, 1+len(text))
	pkt[0] = cmd
	copy(pkt[1:], text)
	return pkt
}

// buildSSLRequest is the short handshake response that asks for TLS.
func buildSSLRequest(caps uint32, collation byte) []byte {
	b := make([]byte, 0, 32)
	b = binary.LittleEndian.AppendUint32(b, caps|mysql.CLIENT_SSL)
	b = binary.LittleEndian.AppendUint32(b, maxPacketPayload)
	b = append(b, collation)
	return append(b, make([]byte, 23)...)
}

// buildHandshakeResponse is the HandshakeResponse41 Sluice sends a backend.
func buildHandshakeResponse(caps uint32, collation byte, user string, auth []byte, db string, attrs []byte, plugin string) []byte {
	b := make([]byte, 0, 64+len(user)+len(auth)+len(db)+len(attrs))
	b = binary.LittleEndian.AppendUint32(b, caps)
	b = binary.LittleEndian.AppendUint32(b, maxPacketPayload)
	b = append(b, collation)
	b = append(b, make([]byte, 23)...)
	b = append(b, user...)
	b = append(b, 0)
	if caps&mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
		b = mysql.AppendLengthEncodedInteger(b, uint64(len(auth)))
	} else {
		b = append(b, byte(len(auth)))
	}
	b = append(b, auth...)
	if caps&mysql.CLIENT_CONNECT_WITH_DB != 0 {
		b = append(b, db...)
		b = append(b, 0)
	}
	b = append(b, plugin...)
	b = append(b, 0)
	if caps&mysql.CLIENT_CONNECT_ATTRS != 0 {
		if len(attrs) == 0 {
			attrs = []byte{0}
		}
		b = append(b, attrs...)
	}
	return b
}

// okPacket builds an OK packet.
func okPacket(affected, insertID uint64, status, warnings uint16) []byte {
	b := make([]byte, 0, 16)
	b = append(b, mysql.OK_HEADER)
	b = mysql.AppendLengthEncodedInteger(b, affected)
	b = mysql.AppendLengthEncodedInteger(b, insertID)
	b = binary.LittleEndian.AppendUint16(b, status)
	b = binary.LittleEndian.AppendUint16(b, warnings)
	return b
}

// SQLError is an error as the MySQL protocol carries it.
type SQLError struct {
	Code    uint16
	State   string
	Message string
}

func (e *SQLError) Error() string {
	return fmt.Sprintf("ERROR %d (%s): %s", e.Code, e.State, e.Message)
}

// newSQLError builds an error with the SQL state MySQL uses for code.
func newSQLError(code uint16, format string, args ...any) *SQLError {
	state := mysql.MySQLState[code]
	if state == "" {
		state = mysql.DEFAULT_MYSQL_STATE
	}
	return &SQLError{Code: code, State: state, Message: fmt.Sprintf(format, args...)}
}

func errPacket(e *SQLError) []byte {
	b := make([]byte, 0, 9+len(e.Message))
	b = append(b, mysql.ERR_HEADER)
	b = binary.LittleEndian.AppendUint16(b, e.Code)
	b = append(b, '#')
	state := e.State
	if len(state) != 5 {
		state = mysql.DEFAULT_MYSQL_STATE
	}
	b = append(b, state...)
	b = append(b, e.Message...)
	return b
}

// parseErr decodes an ERR packet (protocol 4.1 form).
func parseErr(b []byte) *SQLError {
	e := &SQLError{State: mysql.DEFAULT_MYSQL_STATE}
	if len(b) < 3 {
		e.Message = "malformed error packet"
		return e
	}
	e.Code = binary.LittleEndian.Uint16(b[1:])
	msg := b[3:]
	if len(msg) >= 6 && msg[0] == '#' {
		e.State = string(msg[1:6])
		msg = msg[6:]
	}
	e.Message = string(msg)
	return e
}

// OKInfo is what Sluice reads from an OK packet or an EOF packet.
type OKInfo struct {
	Affected     uint64
	LastInsertID uint64
	Status       uint16
	Warnings     uint16
}

// parseOK decodes an OK packet (header 0x00, or 0xFE when it ends a result set
// under CLIENT_DEPRECATE_EOF).
func parseOK(b []byte) (OKInfo, bool) {
	var ok OKInfo
	if len(b) < 1 {
		return ok, false
	}
	b = b[1:]
	var n int
	var valid bool
	if ok.Affected, n, valid = lengthEncodedInt(b); !valid {
		return ok, false
	}
	b = b[n:]
	if ok.LastInsertID, n, valid = lengthEncodedInt(b); !valid {
		return ok, false
	}
	b = b[n:]
	if len(b) < 4 {
		return ok, false
	}
	ok.Status = binary.LittleEndian.Uint16(b)
	ok.Warnings = binary.LittleEndian.Uint16(b[2:])
	return ok, true
}

// parseEOF decodes a protocol 4.1 EOF packet.
func parseEOF(b []byte) (OKInfo, bool) {
	if len(b) < 5 {
		return OKInfo{}, false
	}
	return OKInfo{Warnings: binary.LittleEndian.Uint16(b[1:]), Status: binary.LittleEndian.Uint16(b[3:])}, true
}

// isEOFPacket tells an EOF packet (or the OK that replaces it) from a row
// that happens to start with 0xFE: such a row is at least 2^24 bytes long.
func isEOFPacket(pk Packet, deprecateEOF bool) bool {
	if len(pk.Head) == 0 || pk.Head[0] != mysql.EOF_HEADER {
		return false
	}
	if deprecateEOF {
		return pk.Length < maxPacketPayload
	}
	return pk.Length < 9
}

// ChangeUser is a COM_CHANGE_USER request.
type ChangeUser struct {
	User         string
	AuthResponse []byte
	DB           string
	Collation    byte
	Plugin       string
	Attrs        []byte
}

func parseChangeUser(b []byte, caps uint32) (ChangeUser, error) {
	var cu ChangeUser
	user, rest, ok := cutNul(b[1:])
	if !ok {
		return cu, fmt.Errorf("%w: change user: user name not terminated", errMalformed)
	}
	cu.User = string(user)
	if caps&mysql.CLIENT_SECURE_CONNECTION != 0 {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return cu, fmt.Errorf("%w: change user: auth response length", errMalformed)
		}
		cu.AuthResponse = bytes.Clone(rest[1 : 1+int(rest[0])])
		rest = rest[1+int(rest[0]):]
	} else {
		auth, r, ok := cutNul(rest)
		if !ok {
			return cu, fmt.Errorf("%w: change user: auth response not terminated", errMalformed)
		}
		cu.AuthResponse, rest = bytes.Clone(auth), r
	}
	db, rest, ok := cutNul(rest)
	if !ok {
		db, rest = rest, nil
	}
	cu.DB = string(db)
	if len(rest) >= 2 {
		cu.Collation = rest[0]
		rest = rest[2:]
	}
	if caps&mysql.CLIENT_PLUGIN_AUTH != 0 && len(rest) > 0 {
		plugin, r, ok := cutNul(rest)
		if !ok {
			plugin, r = rest, nil
		}
		cu.Plugin, rest = string(plugin), r
	}
	if caps&mysql.CLIENT_CONNECT_ATTRS != 0 && len(rest) > 0 {
		n, size, ok := lengthEncodedInt(rest)
		if ok && uint64(len(rest)-size) >= n {
			cu.Attrs = bytes.Clone(rest[:size+int(n)])
		}
	}
	return cu, nil
}

// lengthEncodedInt decodes a length-encoded integer. Unlike go-mysql's, it
// never reads past b: a short or hostile packet yields ok == false.
func lengthEncodedInt(b []byte) (n uint64, size int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch b[0] {
	case 0xfb: // NULL
		return 0, 1, true
	case 0xfc:
		size = 3
	case 0xfd:
		size = 4
	case 0xfe:
		size = 9
	case 0xff:
		return 0, 0, false
	default:
		return uint64(b[0]), 1, true
	}
	if len(b) < size {
		return 0, 0, false
	}
	for i := size - 1; i >= 1; i-- {
		n = n<<8 | uint64(b[i])
	}
	return n, size, true
}
