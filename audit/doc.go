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
//     franz-go's idempotent producer to a Kafka cluster (kafka.go).
//   - While the broker does not take them, records go to the spill file
//     (spill.go; genlog.on_full: spill, the default) and are replayed in
//     order once it does. After a failed
//     write the producer asks the broker which of its records were stored
//     after all, by their chain values, so that each is stored once.
//   - Read (read.go) reads the topic back for `sluice audit search` and
//     `tail` and the admin API's audit tail, filtered by a Where
//     expression (where.go); Verify (verify.go) recomputes every chain for
//     `sluice audit verify`, and VerifySigned (verifysigned.go) checks
//     them against signed checkpoints for `sluice audit verify
//     --public-key`.
//
// # Signed checkpoints
//
// The chain alone is unkeyed: anyone who can produce to the topic can read
// the last record, compute the next chain value and append a record that
// verifies; a deleted topic verifies as empty; records cut off the end
// leave no trace in a chain. With genlog.signing_key (an Ed25519 key) the
// producer also signs checkpoints (checkpoint.go): per instance (proxy),
// topic and partition it wrote to, at least every checkpoint_interval while
// records flow and at Close, one record in <topic>.checkpoints stating the
// offset of its last record there, how many of its records the partition
// holds up to it (count), that record's chain value (the head), the hash of
// its previous checkpoint there, the time, and a signature over all of it
// (the JSON without "sig", after a domain line). The producer goroutine,
// which owns the chain state, makes them after a write succeeds, from the
// offsets the writer reports (the bundled broker's Append; the Kafka
// client's acknowledgements); they go through the same writer, or into the spill file
// behind the records spilled before them. A restarted producer finds its
// last checkpoint and counts on from it. One signature per partition per
// interval, not per record.
//
// Why VerifySigned (verifysigned.go, `sluice audit verify --public-key`)
// may say ok:
//
//   - The chain is a hash chain: a record's chain value is SHA-256 of the
//     previous chain value and the record. A signed head therefore fixes
//     every record of that instance before it in the partition, and their
//     order: another sequence reaching the same head is a SHA-256
//     collision. An outsider without the private key cannot make a
//     checkpoint, nor change one (Ed25519 is unforgeable).
//   - A record an outsider appends inside the range a checkpoint covers is
//     not on the path to the signed head: Sluice's next record chains from
//     Sluice's own previous record, not from it. Verify rebuilds each
//     record's predecessor and reports every record up to the newest
//     checkpoint's offset that is not on that path: added by someone else,
//     a copy, or altered (an altered record has a chain value no record
//     follows, and the record after the original no longer finds its
//     predecessor).
//   - A removed record breaks the path: the record after it follows no
//     record present, and the path to the head is shorter than the signed
//     count.
//   - A partition cut short of a checkpoint's offset or count loses the
//     record the checkpoint signs; an emptied partition or a deleted topic
//     is seen as long as the checkpoints topic or an anchor says records
//     existed.
//   - Records after an instance's newest checkpoint are reported as not
//     yet covered, never as verified; with a key given and no checkpoint
//     at all verify fails.
//
// What is left: records a checkpoint covers are proven; the few written
// since the newest (at most one interval, or those of an instance killed
// before its Close) are not. An attacker who deletes the checkpoints topic
// (or its newest records) and truncates the trail consistently back to an
// older checkpoint leaves a trail that verifies: only an anchor kept off
// the machine (GET /v1/audit/checkpoint, given to verify as --checkpoint)
// catches that, up to the anchor's time. Records removed from the start of
// a partition (retention, or DeleteRecords on a Kafka cluster) cannot be
// told from retention: verify counts them as expired. Every instance
// sharing a topic must sign, and verify needs all their public keys: a
// record of an instance without a checkpoint in a covered range is
// reported. Anyone holding the private key (root on the Sluice host) can
// sign anything: keep the key readable by Sluice only.
//
// # Exactly once to a Kafka cluster
//
// kafka.go writes with franz-go's kgo client: idempotent (a producer id and
// a sequence number per partition on every batch), acks=all, each record
// to the partition its chain sealed it for. Within one producer id the
// partition leader drops a batch it stored already, so the client retries
// freely: through a lost acknowledgement, a leader that moves, a broker
// that restarts or goes away (any seed broker gives the cluster's
// metadata). Those used to cost a failed write; with kafka-go, which has
// no idempotence, a write was sent with one attempt and every failure
// resolved by re-reading the partitions' tails.
//
// What goes: the single attempt, and the tail re-read after ordinary
// failures, which the client now rides out inside one write. What stays:
// the tail re-read after a write that failed all the same (no broker
// acknowledged it within the write's 10 s, so its records go to the spill
// file). Such a write may have been stored in part, and the records replay
// later under a new producer id, which the brokers cannot match with the
// old one; when records were sent but not answered the writer closes that
// client, so none of them can arrive later behind the producer's back, and
// the producer resolves the write by chain values before the next one
// (resolveInDoubt), as before. The chain and the checkpoints do not change:
// records are sealed in order before the write, the client keeps each
// partition's order (idempotence allows no reordering across retries), and
// a checkpoint's offset is the one the brokers acknowledged for its record.
//
// The reader, verify, the checkpoints and the chain tails read with the
// same client (kgo, with kmsg requests for metadata and offsets): one Kafka
// client stack, whose TLS (genlog.tls) and SASL (genlog.sasl: PLAIN,
// SCRAM-SHA-256, SCRAM-SHA-512) settings client.go turns into options,
// and whose connection errors it explains: which broker, and which setting
// to fix. The password is read from its file at start and never logged.
//
// The same Producer, without chains, carries the topology events of the
// sluice.events topic.
package audit
