package replay

import "time"

// Outcome is the target's answer to one replayed command.
type Outcome struct {
	Duration  time.Duration
	ErrorCode uint16
	Error     string
	Rows      int64
	Affected  uint64
	// Checksum is the rows' audit.RowsChecksum, when Checked (the answer
	// held a result set).
	Checksum uint64
	Checked  bool
	// NoAnswer: the command has none to compare (COM_STMT_CLOSE).
	NoAnswer bool
}

// Diff is one way an answer differs from the recorded one.
type Diff string

// Differences.
const (
	DiffError    Diff = "error"
	DiffRows     Diff = "rows"
	DiffAffected Diff = "affected"
	DiffChecksum Diff = "checksum"
)

// Diffs lists every kind of difference, in report order.
var Diffs = []Diff{DiffError, DiffRows, DiffAffected, DiffChecksum}

// Compare tells how the replayed answer differs from the recorded one. A
// changed error code is the one difference of a statement that failed on
// either side; rows are compared by count and, when both sides have a
// checksum, by content.
func Compare(rec *Record, got *Outcome) []Diff {
	if got.NoAnswer {
		return nil
	}
	if rec.ErrorCode != got.ErrorCode {
		return []Diff{DiffError}
	}
	if rec.ErrorCode != 0 {
		return nil
	}
	var d []Diff
	if rec.Rows != got.Rows {
		d = append(d, DiffRows)
	}
	if rec.Affected != got.Affected {
		d = append(d, DiffAffected)
	}
	if sum, ok := rec.checksum(); ok && got.Checked && sum != got.Checksum {
		d = append(d, DiffChecksum)
	}
	return d
}
