package audit

import (
	"bytes"
	"strings"
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

// A record carries rows_checksum when the statement's answer was
// checksummed, and no such field otherwise.
func TestGenlogRowsChecksumField(t *testing.T) {
	sink := &memSink{}
	g := NewGenlog(Config{Topic: "t", ResultChecksums: true}, sink)
	s := &Session{ID: 1}
	g.LogQuery(s, &Query{Command: "COM_QUERY", Text: "SELECT 1", Rows: 1, RowsChecksum: 0x9f3c, RowsChecked: true})
	g.LogQuery(s, &Query{Command: "COM_QUERY", Text: "DO 1"})
	if !strings.Contains(sink.values[0], `,"rows":1,"rows_checksum":"9f3c",`) {
		t.Fatalf("no rows_checksum: %s", sink.values[0])
	}
	if strings.Contains(sink.values[1], "rows_checksum") {
		t.Fatalf("rows_checksum without a result set: %s", sink.values[1])
	}
	if !g.WantsResultChecksums() || NewGenlog(Config{}, sink).WantsResultChecksums() {
		t.Fatal("WantsResultChecksums does not follow genlog.result_checksums")
	}
}

// Checksums of rows and redaction exclude each other.
func TestResultChecksumsRefusedWithRedaction(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{ResultChecksums: true}, true},
		{Config{ResultChecksums: true, Redact: "literals"}, false},
		{Config{ResultChecksums: true, RedactColumns: []string{"cards.pan"}}, false},
		{Config{ResultChecksums: true, RedactPatterns: []string{"email"}}, false},
		{Config{Redact: "literals"}, true},
	} {
		c := tc.cfg.WithDefaults()
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.cfg, err)
		} else if err != nil && !strings.Contains(err.Error(), "result_checksums") {
			t.Errorf("the error does not name the key: %v", err)
		}
	}
}
