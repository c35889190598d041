package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-proxy/sluice/replay"
)

// passwordEnv holds the target's password when --password-file is not given.
const passwordEnv = "SLUICE_REPLAY_PASSWORD"

// replayFlags are sluice replay's flags.
type replayFlags struct {
	trail                                    trailFlags
	since, until, fromGTID                   string
	target, user, passwordFile, speed        string
	reportFile, htmlFile                     string
	readOnly                                 bool
	maxSessions, maxRecords, top             int
	orderTimeout, progressEvery, slowerDelta time.Duration
	lookback                                 time.Duration
	slowerFactor                             float64
}

func replayCmd() *cobra.Command {
	var fl replayFlags
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Replay the audit trail's statements against another server and report what answered differently or ran slower (exit status 1 when anything did, 2 when the replay could not run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := fl.run(ctx, cmd)
			if err != nil {
				return &replayFailed{err}
			}
			if rep.Differs() {
				return fmt.Errorf("%d statements answered differently and %d fingerprints ran slower on %s", rep.Differing, rep.Slower, fl.target)
			}
			return nil
		},
	}
	f := cmd.Flags()
	fl.trail.register(cmd) // --brokers, --topic, TLS and SASL, or --config
	f.StringVar(&fl.since, "since", "", "replay records from this time (RFC 3339, e.g. 2026-12-05T09:00:00Z) or this long ago (e.g. 1h); default: the beginning of the trail")
	f.StringVar(&fl.until, "until", "", "replay records before this time (RFC 3339) or this long ago; default: now")
	f.DurationVar(&fl.lookback, "state-lookback", time.Hour, "with --since, also read this far before it for the sessions' state: SET, USE and prepares outside transactions are replayed first (0: none)")
	f.StringVar(&fl.fromGTID, "from-gtid", "", "the target's GTID position (SELECT @@gtid_current_pos where it was restored): transactions committed at or before it are not replayed, nor what ran before them")
	f.StringVar(&fl.target, "target", "", "the server to replay onto, HOST:PORT")
	f.StringVar(&fl.user, "user", "", "account on the target every session replays as")
	f.StringVar(&fl.passwordFile, "password-file", "", "file holding the account's password (else $"+passwordEnv+")")
	f.StringVar(&fl.speed, "speed", "1", "pace: 1 keeps the recorded timing, 2 replays twice as fast, max as fast as the recorded order allows")
	f.BoolVar(&fl.readOnly, "read-only", false, "replay only what cannot change data (skipped transactions are counted by reason); safe against a production replica")
	f.IntVar(&fl.maxSessions, "max-sessions", 256, "sessions replayed at once, at most; more wait for one to end (the replay then falls behind schedule)")
	f.IntVar(&fl.maxRecords, "max-records", 1000000, "records read into memory, at most; a larger window is refused (narrow --since/--until)")
	f.DurationVar(&fl.orderTimeout, "order-timeout", 5*time.Second, "how long a statement waits for the statements of other sessions recorded before it, at most (counted when it gives up)")
	f.StringVar(&fl.reportFile, "report", "", "write the report as JSON to this file")
	f.StringVar(&fl.htmlFile, "html", "", "write the report as an HTML page to this file")
	f.IntVar(&fl.top, "top", 20, "fingerprints shown in the terminal table (all are in --report)")
	f.Float64Var(&fl.slowerFactor, "slower-factor", 2, "a fingerprint is slower when its replay p50 is this many times the original's (0: never) ...")
	f.DurationVar(&fl.slowerDelta, "slower-min", time.Millisecond, "... and at least this much more")
	f.DurationVar(&fl.progressEvery, "progress", 5*time.Second, "print progress this often on stderr (0: never)")
	return cmd
}

// planOptions reads the flags that choose what is replayed.
func (fl *replayFlags) planOptions(now time.Time) (popts replay.PlanOptions, err error) {
	if popts.Since, err = parseWhen("--since", fl.since, now); err != nil {
		return popts, err
	}
	if popts.Until, err = parseWhen("--until", fl.until, now); err != nil {
		return popts, err
	}
	if fl.fromGTID != "" {
		if popts.FromGTID, err = replay.ParsePosition(fl.fromGTID); err != nil {
			return popts, fmt.Errorf("--from-gtid: %w", err)
		}
	}
	popts.ReadOnly = fl.readOnly
	return popts, nil
}

// run reads the window, replays it and writes the reports.
func (fl *replayFlags) run(ctx context.Context, cmd *cobra.Command) (*replay.Report, error) {
	if fl.target == "" || fl.user == "" {
		return nil, errors.New("--target HOST:PORT and --user are required")
	}
	password, err := replayPassword(fl.passwordFile)
	if err != nil {
		return nil, err
	}
	speed, err := parseSpeed(fl.speed)
	if err != nil {
		return nil, err
	}
	popts, err := fl.planOptions(time.Now())
	if err != nil {
		return nil, err
	}
	trail, topic, err := fl.trail.kafka(cmd)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "replay: reading %s from %s\n", topic, strings.Join(trail.Brokers, ","))
	recs, err := replay.Read(ctx, replay.ReadOptions{Kafka: trail, Topic: topic, Since: popts.Since, Until: popts.Until,
		Lookback: fl.lookback, MaxRecords: fl.maxRecords})
	if err != nil {
		return nil, err
	}
	plan, err := replay.BuildPlan(recs, popts, replay.NewClassifier().Classify)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "replay: read %d records from %s: %d statements of %d sessions to replay, %d skipped\n",
		len(recs), topic, plan.Replayed, len(plan.Sessions), total(plan.Skipped))
	opts := replay.Options{
		Dial: replay.MySQLDialer(fl.target, fl.user, password, fl.readOnly), Speed: speed,
		MaxSessions: fl.maxSessions, OrderTimeout: fl.orderTimeout,
		Slower:   replay.Thresholds{Factor: fl.slowerFactor, MinDelta: fl.slowerDelta},
		Progress: os.Stderr, ProgressEvery: fl.progressEvery,
	}
	if fl.progressEvery <= 0 {
		opts.Progress = nil
	}
	rep, err := replay.Run(ctx, plan, opts)
	if rep == nil {
		return nil, err
	}
	rep.Target, rep.ReadOnly, rep.Speed, rep.Records = fl.target, fl.readOnly, fl.speed, len(recs)
	if werr := writeReports(rep, fl.reportFile, fl.htmlFile, fl.top); werr != nil {
		return nil, errors.Join(err, werr)
	}
	return rep, err
}

// replayFailed is an error that kept the replay from running or finishing
// (flags, the trail, the target): exit status 2, where 1 says that the
// target answered differently.
type replayFailed struct{ error }

func (e *replayFailed) Unwrap() error { return e.error }

// replayPassword reads the target's password from file, or from the
// environment; it is never a flag's value (ps shows those).
func replayPassword(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w (or leave it out and set $%s)", err, passwordEnv)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return os.Getenv(passwordEnv), nil
}

// parseSpeed reads --speed: a positive factor, or max (0).
func parseSpeed(s string) (float64, error) {
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("--speed %q: use a positive factor (1 keeps the recorded pace, 2 is twice as fast) or max", s)
	}
	return v, nil
}

// parseWhen reads --since/--until: a time (RFC 3339) or a duration ago.
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s %q: use a time such as 2026-12-05T09:00:00Z or a duration ago such as 90m", flag, s)
}

// writeReports writes the table on stdout and the files asked for.
func writeReports(rep *replay.Report, jsonFile, htmlFile string, top int) error {
	if err := rep.WriteTable(os.Stdout, top); err != nil {
		return err
	}
	for _, out := range []struct {
		file  string
		write func(*os.File) error
	}{
		{jsonFile, func(f *os.File) error { return rep.WriteJSON(f) }},
		{htmlFile, func(f *os.File) error { return rep.WriteHTML(f) }},
	} {
		if out.file == "" {
			continue
		}
		f, err := os.Create(out.file)
		if err != nil {
			return fmt.Errorf("report: %w (the table above has the results)", err)
		}
		err = out.write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("report %s: %w (the table above has the results)", out.file, err)
		}
	}
	return nil
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
