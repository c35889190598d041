package proxy

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/audit"
)

// maxLoggedParam bounds one logged parameter value; longer ones are cut.
const maxLoggedParam = 1024

// executeParams decodes the parameter values of a COM_STMT_EXECUTE for the
// query log. types is the statement's last type block, used when the packet
// carries none. Values sent with COM_STMT_SEND_LONG_DATA are not in the
// packet; they are logged as "<long data>".
func executeParams(pkt []byte, n int, types []byte, longData bool) ([]audit.Param, error) {
	if n == 0 {
		return nil, nil
	}
	nullBitmap := (n + 7) / 8
	pos := 10
	if len(pkt) < pos+nullBitmap+1 {
		return nil, fmt.Errorf("%w: execute packet too short for %d parameters", errMalformed, n)
	}
	nulls := pkt[pos : pos+nullBitmap]
	pos += nullBitmap
	if pkt[pos] == 1 {
		pos++
		if len(pkt) < pos+2*n {
			return nil, fmt.Errorf("%w: execute packet too short for its parameter types", errMalformed)
		}
		types = pkt[pos : pos+2*n]
		pos += 2 * n
	} else {
		pos++
	}
	if len(types) != 2*n {
		return nil, fmt.Errorf("%w: no parameter types bound", errMalformed)
	}
	params := make([]audit.Param, n)
	for i := range n {
		if nulls[i/8]&(1<<(i%8)) != 0 {
			params[i].Null = true
			continue
		}
		typ, unsigned := types[2*i], types[2*i+1]&0x80 != 0
		if longData {
			// Which parameters came as long data is not in the packet; the
			// values after them cannot be located reliably either.
			params[i] = audit.Param{Text: "<long data>", Quoted: true}
			continue
		}
		var size int
		switch typ {
		case mysql.MYSQL_TYPE_NULL:
			params[i].Null = true
			continue
		case mysql.MYSQL_TYPE_TINY:
			size = 1
		case mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_YEAR:
			size = 2
		case mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_FLOAT:
			size = 4
		case mysql.MYSQL_TYPE_LONGLONG, mysql.MYSQL_TYPE_DOUBLE:
			size = 8
		case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIME:
			if pos >= len(pkt) {
				return nil, fmt.Errorf("%w: parameter %d truncated", errMalformed, i)
			}
			size = 1 + int(pkt[pos])
		default: // strings, decimals, blobs, JSON, bit, enum, set, geometry
			l, ls, ok := lengthEncodedInt(pkt[pos:])
			if !ok || l > uint64(len(pkt)-pos-ls) {
				return nil, fmt.Errorf("%w: parameter %d truncated", errMalformed, i)
			}
			v := pkt[pos+ls : pos+ls+int(l)]
			pos += ls + int(l)
			if len(v) > maxLoggedParam {
				v = v[:maxLoggedParam]
			}
			params[i] = audit.Param{Text: string(v), Quoted: true}
			continue
		}
		if pos+size > len(pkt) {
			return nil, fmt.Errorf("%w: parameter %d truncated", errMalformed, i)
		}
		params[i] = fixedParam(typ, unsigned, pkt[pos:pos+size])
		pos += size
	}
	return params, nil
}

// fixedParam formats a fixed-size binary parameter.
func fixedParam(typ byte, unsigned bool, v []byte) audit.Param {
	var u uint64
	switch len(v) {
	case 1:
		u = uint64(v[0])
		if !unsigned {
			u = uint64(int64(int8(v[0])))
		}
	case 2:
		u = uint64(binary.LittleEndian.Uint16(v))
		if !unsigned {
			u = uint64(int64(int16(u)))
		}
	case 4:
		u = uint64(binary.LittleEndian.Uint32(v))
		if typ == mysql.MYSQL_TYPE_FLOAT {
			return floatParam(float64(math.Float32frombits(uint32(u))), 32)
		}
		if !unsigned {
			u = uint64(int64(int32(u)))
		}
	case 8:
		u = binary.LittleEndian.Uint64(v)
		if typ == mysql.MYSQL_TYPE_DOUBLE {
			return floatParam(math.Float64frombits(u), 64)
		}
	}
	switch typ {
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_TIMESTAMP:
		return audit.Param{Text: binaryDateTime(v[1:]), Quoted: true}
	case mysql.MYSQL_TYPE_TIME:
		return audit.Param{Text: binaryTime(v[1:]), Quoted: true}
	}
	if unsigned {
		return audit.Param{Text: strconv.FormatUint(u, 10)}
	}
	return audit.Param{Text: strconv.FormatInt(int64(u), 10)}
}

// floatParam is a number, or a string for what JSON numbers cannot hold.
func floatParam(f float64, bits int) audit.Param {
	text := strconv.FormatFloat(f, 'g', -1, bits)
	return audit.Param{Text: text, Quoted: math.IsNaN(f) || math.IsInf(f, 0)}
}

func binaryDateTime(v []byte) string {
	var y, mo, d, h, mi, s, us int
	if len(v) >= 4 {
		y, mo, d = int(binary.LittleEndian.Uint16(v)), int(v[2]), int(v[3])
	}
	if len(v) >= 7 {
		h, mi, s = int(v[4]), int(v[5]), int(v[6])
	}
	if len(v) >= 11 {
		us = int(binary.LittleEndian.Uint32(v[7:]))
	}
	out := fmt.Sprintf("%04d-%02d-%02d", y, mo, d)
	if len(v) >= 7 {
		out += fmt.Sprintf(" %02d:%02d:%02d", h, mi, s)
	}
	if us != 0 {
		out += fmt.Sprintf(".%06d", us)
	}
	return out
}

func binaryTime(v []byte) string {
	if len(v) < 8 {
		return "00:00:00"
	}
	sign := ""
	if v[0] == 1 {
		sign = "-"
	}
	days := binary.LittleEndian.Uint32(v[1:])
	out := fmt.Sprintf("%s%02d:%02d:%02d", sign, uint64(days)*24+uint64(v[5]), v[6], v[7])
	if len(v) >= 12 {
		if us := binary.LittleEndian.Uint32(v[8:]); us != 0 {
			out += fmt.Sprintf(".%06d", us)
		}
	}
	return out
}
