// Package audit is Sluice's audit trail: one JSON record per login, query
// and session end (the query log, Genlog), sent to Kafka or the bundled
// broker and read back by `sluice audit search`, `tail` and `verify`.
package audit
