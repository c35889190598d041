package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/tidwall/gjson"
)

// ReadOptions select what Read reads.
type ReadOptions struct {
	Brokers []string
	Topic   string
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
	parts, err := topicPartitions(ctx, opts.Brokers, opts.Topic)
	if err != nil {
		return err
	}
	var (
		mu      sync.Mutex
		matches [][]byte
		wg      sync.WaitGroup
		errs    = make([]error, len(parts))
	)
	for i, p := range parts {
		wg.Go(func() {
			errs[i] = readPartition(ctx, opts, p, func(rec []byte) {
				mu.Lock()
				defer mu.Unlock()
				if opts.Follow {
					emit(rec)
				} else {
					matches = append(matches, rec)
				}
			})
		})
	}
	wg.Wait()
	slices.SortStableFunc(matches, func(a, b []byte) int {
		return strings.Compare(gjson.GetBytes(a, "ts").String(), gjson.GetBytes(b, "ts").String())
	})
	for _, m := range matches {
		emit(m)
	}
	if ctx.Err() != nil && opts.Follow {
		return nil
	}
	return errors.Join(errs...)
}

func readPartition(ctx context.Context, opts ReadOptions, p kafka.Partition, emit func([]byte)) error {
	lc, err := dialLeader(ctx, opts.Topic, p)
	if err != nil {
		return err
	}
	first, end, err := lc.ReadOffsets()
	lc.Close()
	if err != nil {
		return fmt.Errorf("partition %d: %w", p.ID, err)
	}
	if !opts.Follow && first >= end {
		return nil // empty
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: opts.Brokers, Topic: opts.Topic, Partition: p.ID, MaxWait: 500 * time.Millisecond})
	defer r.Close()
	switch {
	case opts.Since > 0:
		if err := r.SetOffsetAt(ctx, time.Now().Add(-opts.Since)); err != nil {
			return fmt.Errorf("partition %d: seek: %w", p.ID, err)
		}
	case opts.Follow:
		if err := r.SetOffset(kafka.LastOffset); err != nil {
			return fmt.Errorf("partition %d: seek: %w", p.ID, err)
		}
	}
	if !opts.Follow && r.Offset() >= end {
		return nil // nothing newer than --since
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("partition %d: %w", p.ID, err)
		}
		if opts.Where == nil || opts.Where.Match(m.Value) {
			emit(m.Value)
		}
		if !opts.Follow && m.Offset >= end-1 {
			break
		}
	}
	return nil
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
