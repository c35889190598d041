package audit

import (
	"strconv"
	"time"
	"unicode/utf8"
)

func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, value)
}

func appendInt(b []byte, name string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func appendUint(b []byte, name string, v uint64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

func appendBool(b []byte, name string, v bool) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendBool(b, v)
}

const hexDigits = "0123456789abcdef"

// appendTimestamp writes ts as RFC 3339 in UTC with microseconds
// (2006-01-02T15:04:05.000000Z), without the layout parsing of AppendFormat:
// it runs once per record.
func (g *Genlog) appendTimestamp(b []byte, ts time.Time) []byte {
	ts = ts.UTC()
	sec := g.second.Load()
	if sec == nil || sec.unix != ts.Unix() {
		sec = &stampedSecond{unix: ts.Unix()}
		t := sec.text[:0]
		year, month, day := ts.Date()
		hour, minute, second := ts.Clock()
		t = appendDigits(t, year, 4)
		t = append(t, '-')
		t = appendDigits(t, int(month), 2)
		t = append(t, '-')
		t = appendDigits(t, day, 2)
		t = append(t, 'T')
		t = appendDigits(t, hour, 2)
		t = append(t, ':')
		t = appendDigits(t, minute, 2)
		t = append(t, ':')
		appendDigits(t, second, 2)
		g.second.Store(sec)
	}
	b = append(b, sec.text[:]...)
	b = append(b, '.')
	b = appendDigits(b, ts.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// appendDigits writes v, zero-padded to width digits.
func appendDigits(b []byte, v, width int) []byte {
	var buf [8]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, buf[:width]...)
}

// appendJSONString writes s as a JSON string; invalid UTF-8 becomes U+FFFD,
// so a binary literal in a statement never makes the record unparsable.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		// Copy a run of printable ASCII at once: most statements are all of it.
		j := i
		for j < len(s) && jsonPlain[s[j]] {
			j++
		}
		b = append(b, s[i:j]...)
		if i = j; i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// jsonPlain marks the bytes a JSON string holds as they are.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
