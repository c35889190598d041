package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/sluice-proxy/sluice/audit"
)

// ReadOptions say which records of the trail a replay reads.
type ReadOptions struct {
	// Kafka is the trail's brokers and how to reach them (TLS, SASL).
	Kafka audit.Kafka
	Topic string
	// Since and Until bound the window (zero: open).
	Since, Until time.Time
	// Lookback, with Since, also reads this far before it the records
	// that may set a session's state (BuildPlan keeps those that do).
	Lookback time.Duration
	// MaxRecords bounds the records held; a larger window is refused.
	MaxRecords int
}

// stateRecords are the records before Since that may set a session's
// state.
const stateRecords = `(type == "connect" || command in ["COM_INIT_DB", "COM_STMT_PREPARE"] || query matches "(?i)^\\s*(set|use)\\b")`

// tsText is a time as the records' ts write it, for comparing in --where.
func tsText(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// filter is the audit --where expression that selects what opts ask for.
func (opts *ReadOptions) filter() string {
	cond := `type in ["query", "connect", "quit"]`
	if !opts.Since.IsZero() {
		window := fmt.Sprintf(`ts >= %q`, tsText(opts.Since))
		if opts.Lookback > 0 {
			window = fmt.Sprintf(`(%s || (ts >= %q && %s))`, window, tsText(opts.Since.Add(-opts.Lookback)), stateRecords)
		}
		cond += " && " + window
	}
	if !opts.Until.IsZero() {
		cond += fmt.Sprintf(` && ts < %q`, tsText(opts.Until))
	}
	return cond
}

// Read reads the records a replay needs, ordered by time, through the
// audit package's reader.
func Read(ctx context.Context, opts ReadOptions) ([]Record, error) {
	w, err := audit.ParseWhere(opts.filter())
	if err != nil {
		return nil, err
	}
	ropts := audit.ReadOptions{Kafka: opts.Kafka, Topic: opts.Topic, Where: w}
	if !opts.Since.IsZero() {
		// Kafka timestamps are when the records were written: a little
		// after the statements began.
		ropts.Since = time.Since(opts.Since) + opts.Lookback + time.Minute
	}
	var recs []Record
	var perr error
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = audit.Read(rctx, ropts, func(b []byte) {
		if perr != nil {
			return
		}
		if opts.MaxRecords > 0 && len(recs) >= opts.MaxRecords {
			perr = fmt.Errorf("the window holds more than --max-records %d records: narrow it with --since/--until, or raise --max-records if the memory allows", opts.MaxRecords)
			cancel()
			return
		}
		r, err := ParseRecord(b)
		if err != nil {
			perr = err
			cancel()
			return
		}
		recs = append(recs, r)
	})
	if perr != nil {
		return nil, perr
	}
	if err != nil {
		return nil, fmt.Errorf("read %s from %v: %w (check --brokers and --topic, as for sluice audit search)", opts.Topic, opts.Kafka.Brokers, err)
	}
	return recs, nil
}
