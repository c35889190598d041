// Package replay replays the audit trail (Genlog's query records) against
// another server and reports what answered differently or ran slower:
// `sluice replay`.
//
// The pieces: Record is one record as read from the trail; BuildPlan
// (plan.go) turns the records of a window into per-session steps, keeping
// transactions whole and saying why each step it leaves out is skipped;
// the runner (run.go) replays the steps, one goroutine per session, at
// their recorded pace and in their recorded order (gate.go) over
// connections to the target (target.go); Compare (compare.go) tells an
// answer's differences from the recorded one; Summarize (report.go)
// groups them by fingerprint for the report.
package replay
