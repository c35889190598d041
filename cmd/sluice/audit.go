package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-proxy/sluice/audit"
)

func auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the audit trail (the Genlog topic) with a Kafka consumer"}
	var brokers []string
	var topic, where string
	var since string
	var table bool
	run := func(follow bool) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			w, err := audit.ParseWhere(where)
			if err != nil {
				return err
			}
			opts := audit.ReadOptions{Brokers: brokers, Topic: topic, Where: w, Follow: follow}
			if since != "" {
				if opts.Since, err = parseSince(since); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			emit := func(rec []byte) { fmt.Println(string(rec)) }
			var t *audit.Table
			if table {
				t = audit.NewTable(os.Stdout)
				emit = func(rec []byte) {
					t.Row(rec)
					if follow {
						t.Flush()
					}
				}
			}
			err = audit.Read(ctx, opts, emit)
			if t != nil {
				t.Flush()
			}
			return err
		}
	}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check every record's hash chain: report removed or altered records (exit status 1)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			reports, err := audit.Verify(ctx, brokers, topic)
			if err != nil {
				return err
			}
			problems := 0
			for _, r := range reports {
				note := ""
				if r.Anchored {
					note = " (from the first record retention kept)"
				}
				fmt.Printf("partition %d: %d records verified, offsets %d..%d%s, %d duplicates\n", r.Partition, r.Verified, r.First, r.Last, note, r.Duplicates)
				for _, p := range r.Problems {
					fmt.Printf("partition %d: %s\n", r.Partition, p)
				}
				problems += len(r.Problems)
			}
			if problems > 0 {
				return fmt.Errorf("%d problems in %s: the trail was altered or records were removed", problems, topic)
			}
			fmt.Println("ok: every record chains to the one before it")
			return nil
		},
	}
	verify.Flags().StringSliceVar(&brokers, "brokers", []string{"127.0.0.1:9092"}, "Kafka or bundled broker addresses")
	verify.Flags().StringVar(&topic, "topic", "sluice.genlog", "audit topic")
	cmd.AddCommand(verify)
	for _, c := range []*cobra.Command{
		{Use: "search", Short: "Print matching records up to now, ordered by time", RunE: run(false)},
		{Use: "tail", Short: "Print matching records as they arrive, until Ctrl-C", RunE: run(true)},
	} {
		c.Flags().StringSliceVar(&brokers, "brokers", []string{"127.0.0.1:9092"}, "Kafka or bundled broker addresses")
		c.Flags().StringVar(&topic, "topic", "sluice.genlog", "audit topic")
		c.Flags().StringVar(&since, "since", "", "start this long ago (e.g. 1h, 30m); default: the beginning for search, now for tail")
		c.Flags().StringVar(&where, "where", "", `filter: an expr-lang expression over the record's fields, e.g. 'user=="app" && duration_us>1000000' or 'query ~ "orders" || command in ["COM_STMT_EXECUTE"]' (== != < > <= >= && || ! () in matches contains; a ~ b: a contains the text b); exit status 2 when it does not compile`)
		c.Flags().BoolVar(&table, "table", false, "print a table instead of JSON lines")
		cmd.AddCommand(c)
	}
	return cmd
}

func parseSince(s string) (d time.Duration, err error) {
	d, err = time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--since %q: use a duration such as 90s, 30m or 24h", s)
	}
	return d, nil
}
