package replay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Record is what the replay reads of one Genlog record (the README's audit
// section documents the fields).
type Record struct {
	Type           string            `json:"type"`
	TS             time.Time         `json:"ts"`
	Session        uint32            `json:"session"`
	Seq            uint64            `json:"seq"`
	Proxy          string            `json:"proxy"`
	User           string            `json:"user"`
	DB             string            `json:"db"`
	Command        string            `json:"command"`
	Query          string            `json:"query"`
	QueryTruncated bool              `json:"query_truncated"`
	Params         []json.RawMessage `json:"params"`
	Fingerprint    string            `json:"fingerprint"`
	DurationUS     int64             `json:"duration_us"`
	Rows           int64             `json:"rows"`
	RowsChecksum   string            `json:"rows_checksum"`
	Affected       uint64            `json:"affected"`
	ErrorCode      uint16            `json:"error_code"`
	Error          string            `json:"error"`
	InTx           bool              `json:"in_tx"`
	GTID           string            `json:"gtid"`
	Redacted       []string          `json:"redacted"`
}

// ParseRecord reads one record of the trail.
func ParseRecord(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("a record of the trail is not Genlog's JSON (is --topic the genlog.topic?): %w", err)
	}
	return r, nil
}

// sessionKey names a session across proxies writing one topic.
func (r *Record) sessionKey() string {
	return r.Proxy + "/" + strconv.FormatUint(uint64(r.Session), 10)
}

// end is when the statement's answer was complete.
func (r *Record) end() time.Time { return r.TS.Add(time.Duration(r.DurationUS) * time.Microsecond) }

// checksum is the recorded rows_checksum, if any.
func (r *Record) checksum() (uint64, bool) {
	if r.RowsChecksum == "" {
		return 0, false
	}
	v, err := strconv.ParseUint(r.RowsChecksum, 16, 64)
	return v, err == nil
}

// args are the recorded parameters as values for the binary protocol:
// integers as integers, other numbers as their exact text, strings as
// strings, null as nil. ok is false when a value was not recorded (long
// data, redacted).
func (r *Record) args() (args []any, ok bool) {
	args = make([]any, len(r.Params))
	for i, p := range r.Params {
		switch {
		case bytes.Equal(p, []byte("null")):
			args[i] = nil
		case len(p) > 0 && p[0] == '"':
			var s string
			if err := json.Unmarshal(p, &s); err != nil {
				return nil, false
			}
			if s == "<long data>" || s == "<redacted>" {
				return nil, false
			}
			args[i] = s
		default:
			if n, err := strconv.ParseInt(string(p), 10, 64); err == nil {
				args[i] = n
			} else if u, err := strconv.ParseUint(string(p), 10, 64); err == nil {
				args[i] = u
			} else {
				args[i] = string(p)
			}
		}
	}
	return args, true
}
