package replay

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// maxSamples bounds the latencies kept per fingerprint and side: beyond
// it, a uniform sample of them (reservoir).
const maxSamples = 20000

// Collector gathers what the replay saw; safe for concurrent use.
type Collector struct {
	mu       sync.Mutex
	replayed int
	skipped  map[string]int
	byFP     map[string]*fpAcc
	// orderTimeouts counts steps that ran before a step recorded earlier
	// had been replayed (the gate gave up waiting).
	orderTimeouts int
}

type fpAcc struct {
	count        int
	orig, replay []int64 // µs
	seen         int
	diffs        map[Diff]int
	errorChanges map[[2]uint16]int
	example      *Example
	// differing counts statements with any difference.
	differing int
}

// NewCollector makes an empty collector.
func NewCollector() *Collector {
	return &Collector{skipped: map[string]int{}, byFP: map[string]*fpAcc{}}
}

// Skip counts steps not replayed.
func (c *Collector) Skip(reason string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skipped[reason] += n
}

// OrderTimeout counts a step that could not wait for the recorded order.
func (c *Collector) OrderTimeout() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.orderTimeouts++
}

// Add records one replayed step and returns its differences.
func (c *Collector) Add(rec *Record, got *Outcome) []Diff {
	diffs := Compare(rec, got)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replayed++
	if got.NoAnswer {
		return nil
	}
	fp := fingerprintOf(rec)
	a := c.byFP[fp]
	if a == nil {
		a = &fpAcc{diffs: map[Diff]int{}, errorChanges: map[[2]uint16]int{}}
		c.byFP[fp] = a
	}
	a.count++
	a.seen++
	if len(a.orig) < maxSamples {
		a.orig = append(a.orig, rec.DurationUS)
		a.replay = append(a.replay, got.Duration.Microseconds())
	} else if k := rand.IntN(a.seen); k < maxSamples {
		a.orig[k], a.replay[k] = rec.DurationUS, got.Duration.Microseconds()
	}
	for _, d := range diffs {
		a.diffs[d]++
	}
	if slices.Contains(diffs, DiffError) {
		a.errorChanges[[2]uint16{rec.ErrorCode, got.ErrorCode}]++
	}
	if len(diffs) > 0 {
		a.differing++
		if a.example == nil {
			a.example = newExample(rec, got, diffs)
		}
	}
	return diffs
}

// fingerprintOf is the report's key of a statement: its fingerprint, but a
// prepare is told from its executes (a prepare's time is not an
// execution's).
func fingerprintOf(rec *Record) string {
	fp := rec.Fingerprint
	if fp == "" {
		fp = rec.Query
	}
	switch rec.Command {
	case "COM_QUERY", "COM_STMT_EXECUTE":
		return fp
	case "COM_STMT_PREPARE":
		return "(prepare) " + fp
	}
	return "(" + rec.Command + ") " + fp
}

// Example is one statement that answered differently.
type Example struct {
	Session  string          `json:"session"`
	TS       time.Time       `json:"ts"`
	Query    string          `json:"query"`
	Params   json.RawMessage `json:"params,omitempty"`
	Diffs    []Diff          `json:"differences"`
	Original Answer          `json:"original"`
	Replay   Answer          `json:"replay"`
}

// Answer is one side of an example.
type Answer struct {
	ErrorCode uint16 `json:"error_code"`
	Error     string `json:"error,omitempty"`
	Rows      int64  `json:"rows"`
	Affected  uint64 `json:"affected"`
	Checksum  string `json:"rows_checksum,omitempty"`
}

func newExample(rec *Record, got *Outcome, diffs []Diff) *Example {
	e := &Example{Session: rec.sessionKey(), TS: rec.TS, Query: rec.Query, Diffs: diffs,
		Original: Answer{ErrorCode: rec.ErrorCode, Error: rec.Error, Rows: rec.Rows, Affected: rec.Affected, Checksum: rec.RowsChecksum},
		Replay:   Answer{ErrorCode: got.ErrorCode, Error: got.Error, Rows: got.Rows, Affected: got.Affected}}
	if len(rec.Params) > 0 {
		e.Params, _ = json.Marshal(rec.Params)
	}
	if got.Checked {
		e.Replay.Checksum = fmt.Sprintf("%x", got.Checksum)
	}
	return e
}

// Thresholds say when a fingerprint counts as slower: its replay p50 is
// at least Factor times the original's and at least MinDelta more.
type Thresholds struct {
	Factor   float64
	MinDelta time.Duration
}

// Report is a replay's result, as --report writes it.
type Report struct {
	Target   string         `json:"target"`
	ReadOnly bool           `json:"read_only"`
	Speed    string         `json:"speed"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Records  int            `json:"records_read"`
	Sessions int            `json:"sessions"`
	Replayed int            `json:"replayed"`
	Skipped  map[string]int `json:"skipped"`
	// Differing counts statements that answered differently; ByDiff by
	// kind of difference.
	Differing     int          `json:"differing"`
	ByDiff        map[Diff]int `json:"by_difference"`
	Slower        int          `json:"slower_fingerprints"`
	OrderTimeouts int          `json:"order_timeouts"`
	MaxLag        string       `json:"max_lag_behind_schedule"`
	// Fingerprints, the slowest regressions first.
	Fingerprints []FingerprintReport `json:"fingerprints"`
}

// FingerprintReport is one statement shape.
type FingerprintReport struct {
	Fingerprint  string        `json:"fingerprint"`
	Count        int           `json:"count"`
	Diffs        map[Diff]int  `json:"differences,omitempty"`
	ErrorChanges []ErrorChange `json:"error_changes,omitempty"`
	Original     Latency       `json:"original"`
	Replay       Latency       `json:"replay"`
	Slower       bool          `json:"slower"`
	Example      *Example      `json:"example,omitempty"`
}

// ErrorChange counts statements whose error code changed from From to To.
type ErrorChange struct {
	From  uint16 `json:"original"`
	To    uint16 `json:"replay"`
	Count int    `json:"count"`
}

// Latency is a fingerprint's latency percentiles, in microseconds.
type Latency struct {
	P50 int64 `json:"p50_us"`
	P99 int64 `json:"p99_us"`
}

// Differs reports whether the replay found anything that answered
// differently or ran slower: the exit status is 1 then.
func (r *Report) Differs() bool { return r.Differing > 0 || r.Slower > 0 }

// Summarize makes the report of what c collected.
func (c *Collector) Summarize(th Thresholds) *Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &Report{Replayed: c.replayed, Skipped: maps.Clone(c.skipped), ByDiff: map[Diff]int{}, OrderTimeouts: c.orderTimeouts}
	for fp, a := range c.byFP {
		f := FingerprintReport{Fingerprint: fp, Count: a.count, Original: latency(a.orig), Replay: latency(a.replay), Example: a.example}
		if len(a.diffs) > 0 {
			f.Diffs = maps.Clone(a.diffs)
		}
		for k, n := range a.errorChanges {
			f.ErrorChanges = append(f.ErrorChanges, ErrorChange{From: k[0], To: k[1], Count: n})
		}
		sort.Slice(f.ErrorChanges, func(i, j int) bool { return f.ErrorChanges[i].Count > f.ErrorChanges[j].Count })
		f.Slower = slower(f.Original, f.Replay, th)
		if f.Slower {
			r.Slower++
		}
		for d, n := range a.diffs {
			r.ByDiff[d] += n
		}
		r.Differing += a.differing
		r.Fingerprints = append(r.Fingerprints, f)
	}
	sortFingerprints(r.Fingerprints)
	return r
}

// slower applies the thresholds to a fingerprint's latencies.
func slower(orig, replay Latency, th Thresholds) bool {
	if th.Factor <= 0 {
		return false
	}
	delta := time.Duration(replay.P50-orig.P50) * time.Microsecond
	return float64(replay.P50) >= th.Factor*float64(max(orig.P50, 1)) && delta >= th.MinDelta
}

// sortFingerprints orders the slowest regressions first (by how much the
// p50 grew), then differing ones, then by count.
func sortFingerprints(fs []FingerprintReport) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := &fs[i], &fs[j]
		if a.Slower != b.Slower {
			return a.Slower
		}
		da, db := a.Replay.P50-a.Original.P50, b.Replay.P50-b.Original.P50
		if a.Slower && da != db {
			return da > db
		}
		if (len(a.Diffs) > 0) != (len(b.Diffs) > 0) {
			return len(a.Diffs) > 0
		}
		if da != db {
			return da > db
		}
		return a.Fingerprint < b.Fingerprint
	})
}

// latency is the p50 and p99 of samples (µs).
func latency(samples []int64) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return Latency{P50: percentile(s, 50), P99: percentile(s, 99)}
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []int64, p int) int64 {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people: the totals, then up to limit
// fingerprints (slowest regressions first) with their differences.
func (r *Report) WriteTable(w io.Writer, limit int) error {
	fmt.Fprintf(w, "replayed %d statements of %d sessions on %s (%s), %d skipped\n", r.Replayed, r.Sessions, r.Target, r.Finished.Sub(r.Started).Round(time.Millisecond), total(r.Skipped))
	for _, reason := range slices.Sorted(maps.Keys(r.Skipped)) {
		fmt.Fprintf(w, "  skipped %d: %s\n", r.Skipped[reason], reason)
	}
	if r.OrderTimeouts > 0 {
		fmt.Fprintf(w, "  %d statements ran before one recorded earlier was replayed (waited longer than --order-timeout)\n", r.OrderTimeouts)
	}
	var kinds []string
	for _, d := range Diffs {
		kinds = append(kinds, fmt.Sprintf("%s %d", d, r.ByDiff[d]))
	}
	fmt.Fprintf(w, "differences: %s; slower fingerprints: %d\n", strings.Join(kinds, ", "), r.Slower)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COUNT\tP50 µs (ORIG→REPLAY)\tP99 µs (ORIG→REPLAY)\tSLOWER\tDIFFERENCES\tFINGERPRINT")
	for i, f := range r.Fingerprints {
		if i == limit {
			fmt.Fprintf(tw, "…\t\t\t\t\t%d more in the JSON report\n", len(r.Fingerprints)-limit)
			break
		}
		fmt.Fprintf(tw, "%d\t%d→%d\t%d→%d\t%s\t%s\t%s\n", f.Count, f.Original.P50, f.Replay.P50, f.Original.P99, f.Replay.P99,
			map[bool]string{true: "yes"}[f.Slower], diffText(&f), clip(f.Fingerprint, 70))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range r.Fingerprints {
		if e := f.Example; e != nil {
			fmt.Fprintf(w, "example of %s: %s", clip(f.Fingerprint, 60), clip(e.Query, 200))
			if len(e.Params) > 0 {
				fmt.Fprintf(w, " params %s", e.Params)
			}
			fmt.Fprintf(w, "\n  original: %s\n  replay:   %s\n", e.Original, e.Replay)
		}
	}
	return nil
}

func (a Answer) String() string {
	s := fmt.Sprintf("error %d, rows %d, affected %d", a.ErrorCode, a.Rows, a.Affected)
	if a.Checksum != "" {
		s += ", rows_checksum " + a.Checksum
	}
	if a.Error != "" {
		s += ": " + clip(a.Error, 120)
	}
	return s
}

func diffText(f *FingerprintReport) string {
	var parts []string
	for _, d := range Diffs {
		if n := f.Diffs[d]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", d, n))
		}
	}
	for _, e := range f.ErrorChanges {
		parts = append(parts, fmt.Sprintf("%d→%d ×%d", e.From, e.To, e.Count))
	}
	return strings.Join(parts, ", ")
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{"diffs": diffText}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>sluice replay: {{.Target}}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}.bad{background:#fdd}code{white-space:pre-wrap}</style></head>
<body><h1>sluice replay onto {{.Target}}</h1>
<p>{{.Replayed}} statements of {{.Sessions}} sessions replayed ({{if .ReadOnly}}read-only, {{end}}speed {{.Speed}}), from {{.Started.Format "2006-01-02 15:04:05"}} to {{.Finished.Format "15:04:05"}}; {{.Differing}} differing, {{.Slower}} fingerprints slower.</p>
{{if .Skipped}}<h2>Skipped</h2><ul>{{range $r, $n := .Skipped}}<li>{{$n}}: {{$r}}</li>{{end}}</ul>{{end}}
<h2>Fingerprints, slowest regressions first</h2>
<table><tr><th>count</th><th>p50 µs orig → replay</th><th>p99 µs orig → replay</th><th>differences</th><th>fingerprint and example</th></tr>
{{range .Fingerprints}}<tr{{if or .Slower .Diffs}} class="bad"{{end}}><td>{{.Count}}</td><td>{{.Original.P50}} → {{.Replay.P50}}{{if .Slower}} (slower){{end}}</td><td>{{.Original.P99}} → {{.Replay.P99}}</td><td>{{diffs .}}</td>
<td><code>{{.Fingerprint}}</code>{{with .Example}}<br>e.g. <code>{{.Query}}</code> {{printf "%s" .Params}}<br>original: {{.Original}}<br>replay: {{.Replay}}{{end}}</td></tr>
{{end}}</table></body></html>
`))

// WriteHTML writes the report as a page.
func (r *Report) WriteHTML(w io.Writer) error { return page.Execute(w, r) }
