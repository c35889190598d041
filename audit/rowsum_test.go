package audit

import (
	"bytes"
	"testing"
)

// packets frames payloads as the wire does: 3-byte length, sequence, payload.
func packets(seq byte, payloads ...[]byte) []byte {
	var b []byte
	for _, p := range payloads {
		b = append(b, byte(len(p)), byte(len(p)>>8), byte(len(p)>>16), seq)
		b = append(b, p...)
		seq++
	}
	return b
}

func TestRowsChecksumMatchesChecksumRows(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, maxPayload)
	for _, tc := range []struct {
		name string
		rows [][]byte
		wire []byte
	}{
		{"none", nil, nil},
		{"one row", [][]byte{[]byte("\x011")}, packets(3, []byte("\x011"))},
		{"two rows, other sequence numbers", [][]byte{[]byte("\x011"), []byte("\x03abc")}, packets(9, []byte("\x011"), []byte("\x03abc"))},
		{"a row of exactly one full packet", [][]byte{big}, packets(5, big, nil)},
		{"an empty payload", [][]byte{{}}, packets(1, []byte{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := ChecksumRows(tc.rows)
			for _, piece := range []int{1, 2, 3, 5, 7, 4096, len(tc.wire) + 1} {
				var c RowsChecksum
				c.Reset()
				for w := tc.wire; len(w) > 0; {
					k := min(piece, len(w))
					c.Write(w[:k])
					w = w[k:]
				}
				if got := c.Sum64(); got != want {
					t.Fatalf("written in pieces of %d: %x, want %x", piece, got, want)
				}
			}
		})
	}
	if ChecksumRows([][]byte{[]byte("ab"), []byte("c")}) == ChecksumRows([][]byte{[]byte("a"), []byte("bc")}) {
		t.Fatal("rows split differently must not sum alike")
	}
}
