package proxy

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/audit"
)

// executePacket builds COM_STMT_EXECUTE with types bound.
func executePacket(types []byte, nulls byte, values []byte) []byte {
	pkt := []byte{mysql.COM_STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0, nulls, 1}
	pkt = append(pkt, types...)
	return append(pkt, values...)
}

func TestExecuteParams(t *testing.T) {
	var v []byte
	v = append(v, 0xfe)                            // TINY -2
	v = binary.LittleEndian.AppendUint64(v, 1<<63) // unsigned LONGLONG
	v = binary.LittleEndian.AppendUint64(v, math.Float64bits(2.5))
	v = append(v, 3, 'a', '"', 'c')                  // VAR_STRING
	v = append(v, 7, 0xe8, 0x07, 11, 23, 13, 14, 15) // DATETIME 2024-11-23 13:14:15
	types := []byte{mysql.MYSQL_TYPE_TINY, 0, mysql.MYSQL_TYPE_LONGLONG, 0x80, mysql.MYSQL_TYPE_DOUBLE, 0,
		mysql.MYSQL_TYPE_VAR_STRING, 0, mysql.MYSQL_TYPE_DATETIME, 0, mysql.MYSQL_TYPE_LONG, 0}
	got, err := executeParams(executePacket(types, 1<<5, v), 6, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []audit.Param{{Text: "-2"}, {Text: "9223372036854775808"}, {Text: "2.5"}, {Text: `a"c`, Quoted: true},
		{Text: "2024-11-23 13:14:15", Quoted: true}, {Null: true}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("param %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// Types from an earlier execute, when this one binds none.
	pkt := []byte{mysql.COM_STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 5, 0, 0, 0}
	if got, err := executeParams(pkt, 1, []byte{mysql.MYSQL_TYPE_LONG, 0}, false); err != nil || got[0].Text != "5" {
		t.Errorf("earlier types: %+v %v", got, err)
	}
	// Truncated packets are errors, never panics.
	full := executePacket(types, 1<<5, v)
	for n := range len(full) {
		if _, err := executeParams(full[:n], 6, nil, false); err == nil {
			t.Errorf("truncated at %d: no error", n)
		}
	}
}

func FuzzExecuteParams(f *testing.F) {
	f.Add(executePacket([]byte{mysql.MYSQL_TYPE_VAR_STRING, 0}, 0, []byte{2, 'h', 'i'}), 1)
	f.Add(executePacket([]byte{mysql.MYSQL_TYPE_TIME, 0}, 0, []byte{8, 1, 2, 0, 0, 0, 3, 4, 5}), 1)
	f.Fuzz(func(t *testing.T, pkt []byte, n int) {
		if n < 0 || n > 64 {
			return
		}
		_, _ = executeParams(pkt, n, nil, false)
	})
}
