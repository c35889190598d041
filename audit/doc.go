// Package audit is Sluice's audit trail: one JSON record per connect,
// login, statement and quit of every client session (the query log,
// Genlog), kept in a Kafka topic, the bundled broker's or a cluster's,
// and chained so that a removed or altered record shows.
//
// A record flows like this:
//
//   - The proxy's session calls Genlog (genlog.go), which encodes the event
//     as one JSON object (json.go), numbers it in its session (seq) and
//     hands a Record (record.go), keyed by session id, to the Producer.
//   - The Producer (producer.go) queues it in a bounded queue, so the
//     session does not wait on the broker (when the queue is full the
//     record is dropped and counted, or with on_full: block the session
//     waits for room). Its goroutine gathers a batch, seals each
//     record after the one before it in its partition (chain.go: the
//     SHA-256 of the previous chain value and the record, appended as its
//     "chain" field) and writes the batch: straight into the bundled
//     broker's log when it runs in this process (local.go), or through
//     kafka-go to a Kafka cluster (kafka.go).
//   - While the broker does not take them, records go to the spill file
//     (spill.go; genlog.on_full: spill, the default) and are replayed in
//     order once it does. After a failed
//     write the producer asks the broker which of its records were stored
//     after all, by their chain values, so that each is stored once.
//   - Read (read.go) reads the topic back for `sluice audit search` and
//     `tail` and the admin API's audit tail, filtered by a Where
//     expression (where.go); Verify (verify.go) recomputes every chain for
//     `sluice audit verify`.
//
// The same Producer, without chains, carries the topology events of the
// sluice.events topic.
package audit
