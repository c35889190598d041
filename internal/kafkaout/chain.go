package kafkaout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/tidwall/gjson"
)

// A chained record ends with ,"chain":"<64 hex digits>"}: the SHA-256 of the
// previous record's chain in the same partition followed by the record
// without its chain field. Removing or altering a record breaks every chain
// value after it, which `sluice audit verify` reports.
const chainField = `,"chain":"`

// chainLen is the length of the chain suffix: the field, 64 hex digits, "}.
const chainLen = len(chainField) + 64 + 2

// Chain seals record (a JSON object) after prev, returning the sealed record
// and its chain value.
func Chain(prev [32]byte, record []byte) ([]byte, [32]byte) {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(record)
	var sum [32]byte
	h.Sum(sum[:0])
	out := make([]byte, 0, len(record)+chainLen)
	out = append(out, record[:len(record)-1]...)
	out = append(out, chainField...)
	out = hex.AppendEncode(out, sum[:])
	out = append(out, '"', '}')
	return out, sum
}

// Unchain splits a sealed record into the record as it was sealed and its
// chain value; ok is false for a record without one.
func Unchain(sealed []byte) (record []byte, chain [32]byte, ok bool) {
	if len(sealed) < chainLen+2 || !bytes.HasSuffix(sealed, []byte(`"}`)) {
		return nil, chain, false
	}
	at := len(sealed) - chainLen
	if !bytes.Equal(sealed[at:at+len(chainField)], []byte(chainField)) {
		return nil, chain, false
	}
	if _, err := hex.Decode(chain[:], sealed[at+len(chainField):len(sealed)-2]); err != nil {
		return nil, chain, false
	}
	record = append(append(make([]byte, 0, at+1), sealed[:at]...), '}')
	return record, chain, true
}

// partitionOf maps a key to a partition, stably.
func partitionOf(key []byte, partitions int) int {
	h := fnv.New32a()
	h.Write(key)
	return int(h.Sum32() % uint32(partitions))
}

// chosenPartition routes a message to the partition the producer chose.
type chosenPartition struct{}

func (chosenPartition) Balance(msg kafka.Message, partitions ...int) int {
	for _, p := range partitions {
		if p == msg.Partition {
			return p
		}
	}
	return partitions[partitionOf(msg.Key, len(partitions))%len(partitions)]
}

// chainState is the last chain value of each partition of a topic.
type chainState struct {
	last [][32]byte
}

// loadChain reads a topic's partitions and the chain value of the last
// record of each, so a restarted Sluice continues the chains.
func (p *Producer) loadChain(topic string) (*chainState, error) {
	if st := p.chains[topic]; st != nil {
		return st, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", p.brokers[0])
	if err != nil {
		return nil, err
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil || len(parts) == 0 {
		// Create the topic through a first metadata round trip.
		if conn, err = kafka.DialContext(ctx, "tcp", p.brokers[0]); err == nil {
			parts, err = conn.ReadPartitions(topic)
			conn.Close()
		}
		if err != nil || len(parts) == 0 {
			return nil, fmt.Errorf("topic %s has no partitions yet: %v", topic, err)
		}
	}
	st := &chainState{last: make([][32]byte, len(parts))}
	for _, part := range parts {
		lc, err := kafka.DialLeader(ctx, "tcp", fmt.Sprintf("%s:%d", part.Leader.Host, part.Leader.Port), topic, part.ID)
		if err != nil {
			return nil, err
		}
		first, last, err := lc.ReadOffsets()
		if err == nil && last > first {
			lc.Seek(last-1, kafka.SeekAbsolute)
			lc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if m, err := lc.ReadMessage(1 << 20); err == nil {
				if c := gjson.GetBytes(m.Value, "chain").String(); len(c) == 64 {
					hex.Decode(st.last[part.ID][:], []byte(c))
				}
			}
		}
		lc.Close()
	}
	p.chains[topic] = st
	return st, nil
}

// seal chains a batch in order; the new chain values are committed only
// once the batch is written.
func (p *Producer) seal(batch []kafka.Message) ([]kafka.Message, func(), error) {
	next := map[string][][32]byte{}
	out := make([]kafka.Message, len(batch))
	for i, m := range batch {
		st, err := p.loadChain(m.Topic)
		if err != nil {
			return nil, nil, err
		}
		last := next[m.Topic]
		if last == nil {
			last = append([][32]byte(nil), st.last...)
			next[m.Topic] = last
		}
		part := partitionOf(m.Key, len(last))
		m.Partition = part
		m.Value, last[part] = Chain(last[part], m.Value)
		out[i] = m
	}
	commit := func() {
		for topic, last := range next {
			p.chains[topic].last = last
		}
	}
	return out, commit, nil
}
