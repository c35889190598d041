package audit

// Record is one Kafka record on its way to the broker: made by Genlog (or
// the topology events), queued, sealed by the chain, spilled and written
// as it is. It becomes a kgo.Record only where the Kafka writer takes it
// (kafkaWriter).
type Record struct {
	Topic string
	// Key picks the partition: Genlog's is the session id, so that a
	// session's records stay in order in one partition.
	Key []byte
	// Value is one JSON object.
	Value []byte
	// Partition is the partition whose chain sealed the record; the writer
	// stores it there. Unsealed records leave it to the writer, by key.
	Partition int
	// Offset is where the writer stored the record; -1 when it did not
	// say.
	Offset int64
}

// Sink takes records; the producer behind it owns delivery.
type Sink interface {
	// Send queues one record; it never waits on the broker.
	Send(Record) bool
}
