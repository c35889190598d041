package logbroker

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// RecordBatch v2 layout (all big-endian). The broker only ever looks at the
// header; record bodies are stored and served as produced.
const (
	batchOffBaseOffset      = 0  // int64
	batchOffLength          = 8  // int32: bytes after this field
	batchOffLeaderEpoch     = 12 // int32
	batchOffMagic           = 16 // int8 = 2
	batchOffCRC             = 17 // uint32, CRC-32C of bytes 21..end
	batchOffAttributes      = 21 // int16
	batchOffLastOffsetDelta = 23 // int32
	batchOffBaseTimestamp   = 27 // int64
	batchOffMaxTimestamp    = 35 // int64
	batchOffProducerID      = 43 // int64
	batchOffProducerEpoch   = 51 // int16
	batchOffBaseSequence    = 53 // int32
	batchOffNumRecords      = 57 // int32
	batchHeaderLen          = 61

	// batchLengthPrefix is the part of the header not counted in Length.
	batchLengthPrefix = 12
	// attrTransactional and attrControl mark batches of transactions,
	// which this broker does not implement.
	attrTransactional = 0x10
	attrControl       = 0x20
	attrCompression   = 0x07
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	errBatchShort = errors.New("record batch shorter than its header")
	errBatchMagic = errors.New("record batch magic is not 2")
	errBatchCRC   = errors.New("record batch CRC mismatch")
	errBatchLen   = errors.New("record batch length out of range")
)

// batchHeader is the decoded fixed part of a RecordBatch v2.
type batchHeader struct {
	BaseOffset      int64
	Length          int32
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	Attributes      int16
	LastOffsetDelta int32
	BaseTimestamp   int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	NumRecords      int32
}

// parseBatchHeader decodes the header at the start of b. It checks only that
// the header is present and its length field is plausible.
func parseBatchHeader(b []byte) (batchHeader, error) {
	if len(b) < batchHeaderLen {
		return batchHeader{}, errBatchShort
	}
	h := batchHeader{
		BaseOffset:      int64(binary.BigEndian.Uint64(b[batchOffBaseOffset:])),
		Length:          int32(binary.BigEndian.Uint32(b[batchOffLength:])),
		LeaderEpoch:     int32(binary.BigEndian.Uint32(b[batchOffLeaderEpoch:])),
		Magic:           int8(b[batchOffMagic]),
		CRC:             binary.BigEndian.Uint32(b[batchOffCRC:]),
		Attributes:      int16(binary.BigEndian.Uint16(b[batchOffAttributes:])),
		LastOffsetDelta: int32(binary.BigEndian.Uint32(b[batchOffLastOffsetDelta:])),
		BaseTimestamp:   int64(binary.BigEndian.Uint64(b[batchOffBaseTimestamp:])),
		MaxTimestamp:    int64(binary.BigEndian.Uint64(b[batchOffMaxTimestamp:])),
		ProducerID:      int64(binary.BigEndian.Uint64(b[batchOffProducerID:])),
		ProducerEpoch:   int16(binary.BigEndian.Uint16(b[batchOffProducerEpoch:])),
		BaseSequence:    int32(binary.BigEndian.Uint32(b[batchOffBaseSequence:])),
		NumRecords:      int32(binary.BigEndian.Uint32(b[batchOffNumRecords:])),
	}
	if h.Length < batchHeaderLen-batchLengthPrefix {
		return h, errBatchLen
	}
	return h, nil
}

// size is the number of bytes the whole batch occupies.
func (h batchHeader) size() int64 { return batchLengthPrefix + int64(h.Length) }

// lastOffset is the offset of the batch's last record.
func (h batchHeader) lastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// lastSequence is the sequence number of the batch's last record, wrapping
// like Kafka's at int32 max.
func (h batchHeader) lastSequence() int32 {
	return seqAdd(h.BaseSequence, h.LastOffsetDelta)
}

func seqAdd(seq, delta int32) int32 {
	s := int64(seq) + int64(delta)
	if s > 1<<31-1 {
		s -= 1 << 31
	}
	return int32(s)
}

// checkBatch verifies that b holds exactly one complete, uncorrupted
// RecordBatch v2 and returns its header.
func checkBatch(b []byte) (batchHeader, error) {
	h, err := parseBatchHeader(b)
	if err != nil {
		return h, err
	}
	if h.Magic != 2 {
		return h, errBatchMagic
	}
	if h.size() != int64(len(b)) {
		return h, errBatchLen
	}
	if h.LastOffsetDelta < 0 {
		return h, errBatchLen
	}
	if crc32.Checksum(b[batchOffAttributes:], castagnoli) != h.CRC {
		return h, errBatchCRC
	}
	return h, nil
}

// splitBatches cuts a produce request's records field into batches, checking
// each one.
func splitBatches(records []byte) ([][]byte, []batchHeader, error) {
	var batches [][]byte
	var headers []batchHeader
	for len(records) > 0 {
		h, err := parseBatchHeader(records)
		if err != nil {
			return nil, nil, err
		}
		if h.size() > int64(len(records)) {
			return nil, nil, errBatchLen
		}
		b := records[:h.size()]
		if h, err = checkBatch(b); err != nil {
			return nil, nil, err
		}
		batches = append(batches, b)
		headers = append(headers, h)
		records = records[h.size():]
	}
	return batches, headers, nil
}

// setBatchBaseOffset rewrites the offset fields the broker owns. Neither is
// covered by the CRC.
func setBatchBaseOffset(b []byte, base int64) {
	binary.BigEndian.PutUint64(b[batchOffBaseOffset:], uint64(base))
	binary.BigEndian.PutUint32(b[batchOffLeaderEpoch:], 0)
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
