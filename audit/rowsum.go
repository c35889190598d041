package audit

import "github.com/cespare/xxhash/v2"

// RowsChecksum is the checksum of a statement's answer that a query record
// carries as "rows_checksum" (genlog.result_checksums): xxHash64 over each
// row packet of its result sets, in order, as the 3-byte length of the
// packet followed by its payload. Column definitions and the EOF or OK
// that ends a result set are left out: they differ between servers that
// hold the same rows. Write takes the raw wire stream of row packets
// (header and payload, in pieces of any size); ChecksumRows computes the
// same value from row payloads a client read.
type RowsChecksum struct {
	d xxhash.Digest
	// header collects the current packet's 4-byte header; left is what
	// remains of its payload.
	header [4]byte
	filled int
	left   int
}

// Reset makes c ready for the next statement.
func (c *RowsChecksum) Reset() { c.d.Reset(); c.filled, c.left = 0, 0 }

// Write adds physical packets (4-byte header and payload) to the checksum.
func (c *RowsChecksum) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		if c.left == 0 && c.filled < 4 {
			k := copy(c.header[c.filled:], b)
			c.filled += k
			b = b[k:]
			if c.filled == 4 {
				// The length, not the sequence number: that counts packets
				// from the command, columns included.
				_, _ = c.d.Write(c.header[:3])
				c.left = int(c.header[0]) | int(c.header[1])<<8 | int(c.header[2])<<16
				c.filled = 0
				if c.left == 0 {
					continue
				}
			}
			continue
		}
		k := min(c.left, len(b))
		_, _ = c.d.Write(b[:k])
		c.left -= k
		b = b[k:]
	}
	return n, nil
}

// Sum64 is the checksum of what was written since the last Reset.
func (c *RowsChecksum) Sum64() uint64 { return c.d.Sum64() }

// maxPayload is the largest payload of one physical packet.
const maxPayload = 1<<24 - 1

// ChecksumRows is RowsChecksum's value for rows read by a client: each
// row's payload as the server sent it (a row of 16 MiB or more travels in
// several packets, split as the protocol splits it).
func ChecksumRows(rows [][]byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	var length [3]byte
	for _, row := range rows {
		for {
			k := min(len(row), maxPayload)
			length[0], length[1], length[2] = byte(k), byte(k>>8), byte(k>>16)
			_, _ = d.Write(length[:])
			_, _ = d.Write(row[:k])
			row = row[k:]
			if k < maxPayload {
				break
			}
		}
	}
	return d.Sum64()
}
