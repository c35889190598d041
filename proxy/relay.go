package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/audit"
)

// Result summarises one command's response as it streamed past: what
// routing, session tracking and the query log need, read from the few bytes
// of OK, EOF and ERR packets. Rows are counted, never decoded.
type Result struct {
	OK OKInfo
	// StatusKnown is true when an OK or EOF packet carried OK.Status.
	StatusKnown bool
	Err         *SQLError
	Rows        int64
	// ResultSet: the answer held a result set (columns and rows).
	ResultSet bool
	// RowsSum is a checksum of the result sets' columns and rows, when
	// the relay was asked for one (transaction replay).
	RowsSum uint64
	// RowsChecksum is the audit.RowsChecksum of the result sets' rows,
	// with RowsChecked, when the query log asked for it.
	RowsChecksum uint64
	RowsChecked  bool
	// Prepare holds COM_STMT_PREPARE's answer.
	Prepare PrepareOK
	// Held: the answer was the error the relay was asked to hold (Err),
	// read but not relayed to the client.
	Held bool
}

// PrepareOK is the first packet of a successful COM_STMT_PREPARE response.
type PrepareOK struct {
	StatementID uint32
	Columns     uint16
	Params      uint16
}

// responseKind is the shape of a command's response.
type responseKind uint8

const (
	respNone       responseKind = iota // COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA
	respSingle                         // one packet: OK, ERR, EOF or a string
	respResultSets                     // COM_QUERY, COM_STMT_EXECUTE
	respRows                           // COM_STMT_FETCH: rows then EOF
	respFieldList                      // COM_FIELD_LIST: columns then EOF
	respPrepare                        // COM_STMT_PREPARE
)

func responseKindOf(cmd byte) responseKind {
	switch cmd {
	case mysql.COM_STMT_CLOSE, mysql.COM_STMT_SEND_LONG_DATA:
		return respNone
	case mysql.COM_QUERY, mysql.COM_STMT_EXECUTE:
		return respResultSets
	case mysql.COM_STMT_FETCH:
		return respRows
	case mysql.COM_FIELD_LIST:
		return respFieldList
	case mysql.COM_STMT_PREPARE:
		return respPrepare
	default:
		return respSingle
	}
}

// errClientGone marks a failure on the client side of a relay, so the
// session can tell it from a backend failure.
var errClientGone = errors.New("client connection failed")

// relay streams the response to a command from backend to client, packet by
// packet, and returns its summary. It flushes to the client whenever the
// backend has nothing more buffered, so a large result flows while small
// ones cost one write.
type relay struct {
	backend      *PacketIO
	client       *PacketIO
	deprecateEOF bool
	// localInfile permits the LOCAL INFILE exchange.
	localInfile bool
	// forwarded counts packets relayed to the client.
	forwarded int
	// sum, when set, receives the column definitions and rows of every
	// result set relayed: what transaction replay compares.
	sum *maphash.Hash
	// rows, when set, receives the rows of every result set relayed: the
	// query log's genlog.result_checksums.
	rows *audit.RowsChecksum
	// inRows is true from a result set's first row to its end.
	inRows bool
	// inResultSet is true between a result set's column count and its end.
	inResultSet bool
	// holdErr, when set, is an error code that is not relayed when it is
	// the whole answer: the session may rather retry the statement.
	holdErr uint16
	// stmtID, when set, replaces the statement id of a prepare's answer:
	// the client knows statements by Sluice's ids.
	stmtID uint32
}

func (r *relay) run(kind responseKind) (Result, error) {
	var res Result
	if r.holdErr != 0 && kind == respResultSets {
		if code, ok, err := r.backend.peekErrCode(); err != nil {
			return res, err
		} else if ok && code == r.holdErr {
			pkt, err := r.backend.ReadPacket()
			if err != nil {
				return res, err
			}
			res.Err, res.Held = parseErr(pkt), true
			return res, nil
		}
	}
	switch kind {
	case respNone:
		return res, nil
	case respSingle:
		pk, err := r.next()
		if err != nil {
			return res, err
		}
		r.readStatus(pk, &res)
		return res, r.flush()
	case respFieldList:
		return res, r.untilEOF(&res, false)
	case respRows:
		return res, r.untilEOF(&res, true)
	case respPrepare:
		return res, r.prepare(&res)
	}
	return res, r.resultSets(&res)
}

// next forwards one logical packet and returns its first physical packet;
// continuation packets of split payloads pass without inspection.
func (r *relay) next() (Packet, error) {
	if !r.backend.Buffered() {
		if err := r.flush(); err != nil {
			return Packet{}, err
		}
	}
	if r.inResultSet && (r.sum != nil || r.rows != nil) {
		length, first, err := r.backend.peekNext()
		if err != nil {
			return Packet{}, err
		}
		// Column definitions and rows, not the EOF or ERR that ends them:
		// their status flags differ from server to server.
		if tee := r.tee(); tee != nil && !isEOFPacket(Packet{Length: length, Head: []byte{first}}, r.deprecateEOF) && first != mysql.ERR_HEADER {
			r.backend.tee = tee
			pk, err := r.forward()
			r.backend.tee = nil
			return pk, err
		}
	}
	return r.forward()
}

// tee is where the next packet of a result set is checksummed: sum takes
// column definitions and rows, rows the rows only.
func (r *relay) tee() io.Writer {
	switch {
	case r.rows == nil || !r.inRows:
		if r.sum == nil {
			return nil
		}
		return r.sum
	case r.sum == nil:
		return r.rows
	}
	return io.MultiWriter(r.sum, r.rows)
}

// forward moves one logical packet: its first physical packet, returned,
// and any continuations.
func (r *relay) forward() (Packet, error) {
	pk, err := r.backend.ForwardPacket(r.client)
	if err != nil {
		return pk, err
	}
	r.forwarded++
	for cont := pk.Continues(); cont; {
		next, err := r.backend.ForwardPacket(r.client)
		if err != nil {
			return pk, err
		}
		cont = next.Continues()
	}
	return pk, nil
}

func (r *relay) flush() error {
	if err := r.client.Flush(); err != nil {
		return fmt.Errorf("%w: %w", errClientGone, err)
	}
	return nil
}

// readStatus records what an OK, EOF or ERR packet says.
func (r *relay) readStatus(pk Packet, res *Result) {
	if len(pk.Head) == 0 {
		return
	}
	switch pk.Head[0] {
	case mysql.OK_HEADER:
		if ok, valid := parseOK(pk.Head); valid {
			res.OK, res.StatusKnown = ok, true
		}
	case mysql.ERR_HEADER:
		res.Err = parseErr(pk.Head)
	case mysql.EOF_HEADER:
		r.readEOF(pk, res)
	}
}

func (r *relay) readEOF(pk Packet, res *Result) {
	if r.deprecateEOF && pk.Length > 5 {
		if ok, valid := parseOK(pk.Head); valid {
			res.OK, res.StatusKnown = ok, true
		}
		return
	}
	if eof, valid := parseEOF(pk.Head); valid {
		res.OK.Status, res.OK.Warnings = eof.Status, eof.Warnings
		res.StatusKnown = true
	}
}

// resultSets relays COM_QUERY and COM_STMT_EXECUTE responses: one or more
// results, each an OK, an ERR, a LOCAL INFILE request or a result set.
func (r *relay) resultSets(res *Result) error {
	for {
		pk, err := r.next()
		if err != nil {
			return err
		}
		switch {
		case len(pk.Head) == 0:
			return fmt.Errorf("%w: empty packet in response", errMalformed)
		case pk.Head[0] == mysql.OK_HEADER:
			r.readStatus(pk, res)
		case pk.Head[0] == mysql.ERR_HEADER:
			r.readStatus(pk, res)
			return r.flush()
		case pk.Head[0] == mysql.LocalInFile_HEADER:
			if err := r.localInfileData(); err != nil {
				return err
			}
			continue // the server answers the upload with OK or ERR
		default:
			columns, _, ok := lengthEncodedInt(pk.Head)
			if !ok {
				return fmt.Errorf("%w: bad column count", errMalformed)
			}
			res.ResultSet = true
			done, err := r.resultSet(columns, res)
			if err != nil {
				return err
			}
			if done {
				return r.flush()
			}
		}
		if res.OK.Status&mysql.SERVER_MORE_RESULTS_EXISTS == 0 {
			return r.flush()
		}
	}
}

// resultSet relays column definitions and rows. done means the response
// ended (an error, or a cursor was opened instead of sending rows).
func (r *relay) resultSet(columns uint64, res *Result) (done bool, err error) {
	r.inResultSet = true
	defer func() { r.inResultSet, r.inRows = false, false }()
	for range columns {
		if _, err := r.next(); err != nil {
			return false, err
		}
	}
	r.inRows = true
	pk, err := r.next()
	if err != nil {
		return false, err
	}
	if isEOFPacket(pk, r.deprecateEOF) {
		r.readEOF(pk, res)
		if res.OK.Status&mysql.SERVER_STATUS_CURSOR_EXISTS != 0 {
			return true, nil
		}
		if r.deprecateEOF {
			return false, nil // an empty result: that OK ended it
		}
		if pk, err = r.next(); err != nil {
			return false, err
		}
	}
	for {
		switch {
		case isEOFPacket(pk, r.deprecateEOF):
			r.readEOF(pk, res)
			return false, nil
		case len(pk.Head) > 0 && pk.Head[0] == mysql.ERR_HEADER:
			res.Err = parseErr(pk.Head)
			return true, nil
		}
		res.Rows++
		if pk, err = r.next(); err != nil {
			return false, err
		}
	}
}

// untilEOF relays packets up to an EOF or ERR: COM_FIELD_LIST's columns or
// COM_STMT_FETCH's rows.
func (r *relay) untilEOF(res *Result, countRows bool) error {
	for {
		pk, err := r.next()
		if err != nil {
			return err
		}
		switch {
		case isEOFPacket(pk, r.deprecateEOF):
			r.readEOF(pk, res)
			return r.flush()
		case len(pk.Head) > 0 && pk.Head[0] == mysql.ERR_HEADER:
			res.Err = parseErr(pk.Head)
			return r.flush()
		}
		if countRows {
			res.Rows++
		}
	}
}

// prepare relays COM_STMT_PREPARE's answer: the statement, then parameter and
// column definitions, each block ending with EOF unless CLIENT_DEPRECATE_EOF.
func (r *relay) prepare(res *Result) error {
	next := r.next
	if r.stmtID != 0 {
		next = r.forwardPrepareOK
	}
	pk, err := next()
	if err != nil {
		return err
	}
	if len(pk.Head) == 0 || pk.Head[0] != mysql.OK_HEADER {
		r.readStatus(pk, res)
		return r.flush()
	}
	if len(pk.Head) < 12 {
		return fmt.Errorf("%w: short prepare response", errMalformed)
	}
	res.Prepare = PrepareOK{
		StatementID: binary.LittleEndian.Uint32(pk.Head[1:]),
		Columns:     binary.LittleEndian.Uint16(pk.Head[5:]),
		Params:      binary.LittleEndian.Uint16(pk.Head[7:]),
	}
	res.OK.Warnings = binary.LittleEndian.Uint16(pk.Head[10:])
	for _, n := range []uint16{res.Prepare.Params, res.Prepare.Columns} {
		if n == 0 {
			continue
		}
		count := int(n)
		if !r.deprecateEOF {
			count++
		}
		for range count {
			if _, err := r.next(); err != nil {
				return err
			}
		}
	}
	return r.flush()
}

// forwardPrepareOK relays the first packet of a prepare's answer with the
// statement id replaced by r.stmtID.
func (r *relay) forwardPrepareOK() (Packet, error) {
	payload, err := r.backend.ReadPacket()
	if err != nil {
		return Packet{}, err
	}
	// The head, for the caller to read, keeps the server's id.
	head := r.backend.head[:copy(r.backend.head[:], payload)]
	if len(payload) >= 5 && payload[0] == mysql.OK_HEADER {
		setStmtID(payload, r.stmtID)
	}
	r.client.SetSequence(r.backend.Sequence() - 1)
	if err := r.client.WritePacket(payload); err != nil {
		return Packet{}, fmt.Errorf("%w: %w", errClientGone, err)
	}
	r.forwarded++
	return Packet{Length: len(payload), Head: head}, nil
}

// localInfileData relays the file a client uploads for LOAD DATA LOCAL
// INFILE: packets up to and including an empty one.
func (r *relay) localInfileData() error {
	if err := r.flush(); err != nil {
		return err
	}
	if !r.localInfile {
		return errors.New("server requested LOCAL INFILE from a client that did not allow it")
	}
	for {
		pk, err := r.client.ForwardPacket(r.backend)
		if err != nil {
			return fmt.Errorf("%w: %w", errClientGone, err)
		}
		if pk.Length == 0 {
			break
		}
	}
	return r.backend.Flush()
}
