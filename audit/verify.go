package audit

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/tidwall/gjson"
)

// PartitionReport is what verification found in one partition.
type PartitionReport struct {
	Partition int
	// First and Last are the offsets verified.
	First, Last int64
	Verified    int
	// Anchored: the partition's first records were deleted by retention, so
	// the chain is verified from the first record kept.
	Anchored   bool
	Duplicates int
	Unchained  int
	Problems   []string
}

// Verify reads every partition of topic and checks each record's chain.
func Verify(ctx context.Context, brokers []string, topic string) ([]PartitionReport, error) {
	parts, err := topicPartitions(ctx, brokers, topic)
	if err != nil {
		return nil, err
	}
	reports := make([]PartitionReport, 0, len(parts))
	for _, p := range parts {
		rep, err := verifyPartition(ctx, topic, p)
		if err != nil {
			return nil, err
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

func verifyPartition(ctx context.Context, topic string, p kafka.Partition) (PartitionReport, error) {
	rep := PartitionReport{Partition: p.ID, First: -1, Last: -1}
	lc, err := dialLeader(ctx, topic, p)
	if err != nil {
		return rep, err
	}
	defer lc.Close()
	first, end, err := lc.ReadOffsets()
	if err != nil || first >= end {
		return rep, err
	}
	rep.Anchored = first > 0
	if _, err := lc.Seek(first, kafka.SeekAbsolute); err != nil {
		return rep, err
	}
	// Each Sluice instance (the record's "proxy") keeps its own chain in
	// the partition, so a clone set can share a topic.
	type chainTip struct {
		prev   [32]byte
		sealed []byte
		seen   bool
	}
	tips := map[string]*chainTip{}
	for offset := first; offset < end; {
		lc.SetReadDeadline(time.Now().Add(10 * time.Second))
		batch := lc.ReadBatch(1, 16<<20)
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			offset = m.Offset + 1
			if rep.First < 0 {
				rep.First = m.Offset
			}
			rep.Last = m.Offset
			record, chain, ok := unchainRecord(m.Value)
			if !ok {
				rep.Unchained++
				rep.Problems = append(rep.Problems, fmt.Sprintf("offset %d: record without a chain value", m.Offset))
				continue
			}
			proxy := gjson.GetBytes(record, "proxy").String()
			tip := tips[proxy]
			if tip == nil {
				tip = &chainTip{}
				tips[proxy] = tip
			}
			switch {
			case rep.Anchored && !tip.seen:
				// Nothing before it to check against.
			case bytes.Equal(m.Value, tip.sealed):
				rep.Duplicates++ // delivered twice
				continue
			default:
				if chainSum(tip.prev, record) != chain {
					rep.Problems = append(rep.Problems, fmt.Sprintf(
						"offset %d: chain broken (records of %q): this record was altered, or records before it were removed", m.Offset, proxy))
				}
			}
			tip.prev, tip.sealed, tip.seen = chain, m.Value, true
			rep.Verified++
		}
		if err := batch.Close(); err != nil && offset < end {
			return rep, fmt.Errorf("partition %d at %d: %w", p.ID, offset, err)
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	return rep, nil
}
