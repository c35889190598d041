package proxy

import (
	"bytes"
	"hash/maphash"
	"testing"

	"github.com/sluice-proxy/sluice/audit"
)

// The relay's rows checksum (genlog.result_checksums) is ChecksumRows of
// the rows a client reads, whatever the columns and end packets, and with
// or without the transaction replay's checksum beside it.
func TestRelayRowsChecksum(t *testing.T) {
	col := append(lenencStr("def"), 0)
	otherCol := append(lenencStr("xyz"), 0)
	a, b := lenencStr("a"), lenencStr("bb")
	for _, c := range []struct {
		name         string
		deprecateEOF bool
		stream       [][]byte
		rows         [][]byte
	}{
		{"rows with EOF", false, [][]byte{{1}, col, eofPacket(2), a, b, eofPacket(3)}, [][]byte{a, b}},
		{"other columns, same rows", false, [][]byte{{1}, otherCol, eofPacket(2), a, b, eofPacket(3)}, [][]byte{a, b}},
		{"DEPRECATE_EOF", true, [][]byte{{2}, col, col, a, b, append([]byte{0xfe}, okPacket(0, 0, 2, 0)[1:]...)}, [][]byte{a, b}},
		{"empty", false, [][]byte{{1}, col, eofPacket(2), eofPacket(2)}, nil},
		{"two results", false, [][]byte{{1}, col, eofPacket(0), a, eofPacket(0x0a), {1}, col, eofPacket(0), b, eofPacket(2)}, [][]byte{a, b}},
	} {
		for _, withTrx := range []bool{false, true} {
			backend := NewPacketIO(&streamConn{r: bytes.NewReader(frames(c.stream...))})
			client := NewPacketIO(&streamConn{r: bytes.NewReader(nil)})
			var sum audit.RowsChecksum
			sum.Reset()
			r := relay{backend: backend, client: client, deprecateEOF: c.deprecateEOF, rows: &sum}
			if withTrx {
				r.sum = new(maphash.Hash)
			}
			if _, err := r.run(respResultSets); err != nil {
				t.Fatal(err)
			}
			if got, want := sum.Sum64(), audit.ChecksumRows(c.rows); got != want {
				t.Fatalf("%s (trx sum %v): %x, want %x", c.name, withTrx, got, want)
			}
		}
	}
}
