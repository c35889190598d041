// Package logbroker is Sluice's bundled log broker: a single-node server that
// speaks the Apache Kafka wire protocol and keeps partitioned logs on disk in
// Kafka's layout, so that audit topics can be read with kcat or any Kafka
// client.
//
// Protocol. Requests are decoded and responses encoded by franz-go's kmsg;
// this package only frames them (conn.go) and serves the versions listed in
// supportedAPIs, which every client Sluice is tested with accepts. Each
// connection has a reader that handles requests one at a time in order, as
// Kafka does, and a writer that sends the answers in the same order; produce
// answers wait there for their fsync, so a client's pipelined produce
// requests share flushes.
//
// Storage. data_dir/<topic>-<partition>/ holds segments named by their base
// offset (00000000000000000000.log) containing RecordBatch v2 bytes exactly
// as produced, with only the base offset and leader epoch rewritten (neither
// is covered by the CRC), plus a sparse offset index (.index) and time index
// (.timeindex) in Kafka's formats. Fetches copy stored bytes out without
// decoding records. At start the last segment of every partition is read
// whole and truncated after its last intact batch; the indexes of other
// segments are checked and rebuilt from batch headers when needed.
// data_dir/__sluice_meta/ keeps topic configs, committed group offsets and
// the producer id high-water mark, each written atomically (temp file,
// fsync, rename).
//
// Hostile input. kmsg before v1.15.1 decoded a tagged-field section by
// looping as many times as the announced field count, even after the input
// ran out, so a 40-byte flexible request announcing ~2^32 tags cost about a
// minute of CPU, and this package walked every flexible body with a copy of
// kmsg's layouts first. kmsg v1.15.1 stops once its reader runs out, so a
// tag count costs no more than the bytes that carry it, and the broker
// leaves decoding to kmsg; TestTagBombRejected checks it against every
// served flexible version. What remains: kmsg allocates an array's
// elements before reading them, up to one element (tens of bytes) for
// every few remaining bytes, so a request near max_request_bytes can
// briefly cost tens of times its size in memory.
//
// Security. broker.tls makes the listener TLS-only (secure_conn.go:
// a plaintext client fails the handshake and is closed and logged), with
// client certificates required when client_ca is set. broker.sasl
// authenticates clients with SCRAM-SHA-256/512 (github.com/xdg-go/scram,
// against credentials derived at start; the passwords are not kept) or
// PLAIN over TLS (sasl.go); before that only ApiVersions and the SASL
// exchange are served. broker.acls decide every other request (acl.go is
// the decision, a pure function; authz.go and the handlers apply it with
// Kafka's error codes). The audit topics in broker.protected_topics are
// append-only for everyone (audit_policy.go), and a network write to them
// needs an ACL that names them. With none of this configured the broker
// serves anyone, and then only on loopback unless allow_anonymous.
// data_dir itself is locked by the caller (Sluice's internal/app) before
// New, because New's recovery may truncate segments.
//
// Not implemented: replication, transactions, fetch sessions, topic ids
// (Fetch 13+, Metadata 10+), OffsetForLeaderEpoch, static group membership
// semantics, AlterConfigs (IncrementalAlterConfigs SET and DELETE of topic
// configs are served), CreateAcls and DeleteAcls (ACLs come from the
// config), DeleteRecords (served only to refuse it), delegation tokens
// and OAUTHBEARER.
package logbroker
