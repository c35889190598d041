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
	var conn trailFlags
	var where string
	var since string
	var table bool
	run := func(follow bool) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			w, err := audit.ParseWhere(where)
			if err != nil {
				return err
			}
			k, topic, err := conn.kafka(cmd)
			if err != nil {
				return err
			}
			opts := audit.ReadOptions{Kafka: k, Topic: topic, Where: w, Follow: follow}
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
	var pubKeys []string
	var anchor string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the trail: with --public-key, that every record up to the newest signed checkpoint is Sluice's own, unaltered and present; without, the order of each hash chain (exit status 1 on a problem)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			k, topic, err := conn.kafka(cmd)
			if err != nil {
				return err
			}
			if len(pubKeys) > 0 || anchor != "" {
				return verifySigned(ctx, k, topic, pubKeys, anchor)
			}
			reports, err := audit.Verify(ctx, k, topic)
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
			fmt.Println("ok: every record chains to the one before it; " + audit.ProvesOrder)
			return nil
		},
	}
	verify.Flags().StringArrayVar(&pubKeys, "public-key", nil, "Ed25519 public key (PEM, openssl pkey -pubout) of an instance writing the trail; repeat for each")
	verify.Flags().StringVar(&anchor, "checkpoint", "", "checkpoints saved from GET /v1/audit/checkpoint (an anchor kept off the machine)")
	conn.register(verify)
	cmd.AddCommand(verify)
	for _, c := range []*cobra.Command{
		{Use: "search", Short: "Print matching records up to now, ordered by time", RunE: run(false)},
		{Use: "tail", Short: "Print matching records as they arrive, until Ctrl-C", RunE: run(true)},
	} {
		conn.register(c)
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

// verifySigned is audit verify with public keys.
func verifySigned(ctx context.Context, k audit.Kafka, topic string, pubKeys []string, anchor string) error {
	if len(pubKeys) == 0 {
		return fmt.Errorf("--checkpoint needs --public-key: an anchor is checked by its signature")
	}
	opts := audit.SignedOptions{Kafka: k, Topic: topic}
	for _, f := range pubKeys {
		k, err := audit.LoadPublicKey(f)
		if err != nil {
			return fmt.Errorf("--public-key %v", err)
		}
		opts.Keys = append(opts.Keys, k)
	}
	if anchor != "" {
		cps, err := audit.LoadAnchor(anchor)
		if err != nil {
			return fmt.Errorf("--checkpoint %v", err)
		}
		opts.Anchor = cps
	}
	rep, err := audit.VerifySigned(ctx, opts)
	if err != nil {
		return err
	}
	problems := len(rep.Problems)
	uncovered := 0
	for _, p := range rep.Partitions {
		note := ""
		if p.Expired > 0 {
			note = fmt.Sprintf(", %d older records expired (before the first kept)", p.Expired)
		}
		fmt.Printf("partition %d: %d records verified against signed checkpoints, %d not yet covered by a checkpoint%s\n", p.Partition, p.Covered, p.Uncovered, note)
		for _, n := range p.Newest {
			fmt.Printf("partition %d: newest checkpoint of %s\n", p.Partition, n)
		}
		for _, m := range p.Problems {
			fmt.Printf("partition %d: %s\n", p.Partition, m)
		}
		problems += len(p.Problems)
		uncovered += p.Uncovered
	}
	for _, m := range rep.Problems {
		fmt.Println(m)
	}
	if problems > 0 {
		return fmt.Errorf("%d problems in %s: records were added, altered or removed", problems, topic)
	}
	fmt.Printf("ok: %d signed checkpoints; every record up to them is the signing instances' own, unaltered and present", rep.Checkpoints)
	if uncovered > 0 {
		fmt.Printf(" (%d newer records are not yet covered by a checkpoint, so not proven)", uncovered)
	}
	fmt.Println()
	return nil
}
