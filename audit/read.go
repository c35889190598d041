package audit

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tidwall/gjson"
)

// ReadOptions select what Read reads.
type ReadOptions struct {
	Kafka Kafka
	Topic string
	// Since reads records from this long ago; 0 reads from the beginning.
	Since time.Duration
	Where *Where
	// Follow keeps reading new records until ctx ends (tail).
	Follow bool
}

// Read calls emit with every matching record: for a search, all of them
// once the partitions are read to their ends, ordered by time; for a tail,
// as they arrive.
func Read(ctx context.Context, opts ReadOptions, emit func([]byte)) error {
	r, err := opts.Kafka.reader()
	if err != nil {
		return err
	}
	defer r.Close()
	parts, err := r.partitions(ctx, opts.Topic, false)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return fmt.Errorf("topic %s does not exist on %s", opts.Topic, strings.Join(opts.Kafka.Brokers, ","))
	}
	ends, err := r.listOffsets(ctx, opts.Topic, parts, -1)
	if err != nil {
		return err
	}
	from, err := r.listOffsets(ctx, opts.Topic, parts, -2)
	switch {
	case err != nil:
		return err
	case opts.Since > 0:
		if from, err = r.listOffsets(ctx, opts.Topic, parts, time.Now().Add(-opts.Since).UnixMilli()); err != nil {
			return err
		}
		for p, o := range from {
			if o < 0 { // nothing as new: from the end
				from[p] = ends[p]
			}
		}
	case opts.Follow:
		from = ends
	}
	var matches [][]byte
	keep := func(_ int, _ int64, v []byte) {
		if opts.Where == nil || opts.Where.Match(v) {
			if opts.Follow {
				emit(v)
			} else {
				matches = append(matches, v)
			}
		}
	}
	if opts.Follow {
		err = r.consume(ctx, opts.Topic, from, func(p int, o int64, v []byte) bool { keep(p, o, v); return true }, nil)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	err = r.consume(ctx, opts.Topic, from, func(p int, o int64, v []byte) bool {
		keep(p, o, v)
		return o+1 < ends[p]
	}, ends)
	slices.SortStableFunc(matches, func(a, b []byte) int {
		return strings.Compare(gjson.GetBytes(a, "ts").String(), gjson.GetBytes(b, "ts").String())
	})
	for _, m := range matches {
		emit(m)
	}
	return err
}

// Table writes records as aligned columns for people.
type Table struct {
	tw *tabwriter.Writer
}

// NewTable starts a table on w with its header.
func NewTable(w io.Writer) *Table {
	t := &Table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	fmt.Fprintln(t.tw, "TS\tSESSION\tUSER\tTYPE\tSERVER\tDURATION_US\tROWS\tERROR\tQUERY")
	return t
}

// Row writes one record.
func (t *Table) Row(rec []byte) {
	g := func(p string) string { return gjson.GetBytes(rec, p).String() }
	q := g("query")
	if len(q) > 80 {
		q = q[:77] + "..."
	}
	fmt.Fprintf(t.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g("ts"), g("session"), g("user"), g("type"),
		g("server"), g("duration_us"), g("rows"), g("error_code"), strings.ReplaceAll(q, "\n", " "))
}

// Flush writes the table out.
func (t *Table) Flush() error { return t.tw.Flush() }
