package audit

import (
	"bytes"
	"context"
	"fmt"

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
func Verify(ctx context.Context, k Kafka, topic string) ([]PartitionReport, error) {
	r, err := k.reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	parts, err := r.partitions(ctx, topic, false)
	if err != nil {
		return nil, err
	}
	reports := make([]PartitionReport, 0, len(parts))
	for _, p := range parts {
		rep, err := verifyPartition(ctx, r, topic, p)
		if err != nil {
			return nil, err
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

func verifyPartition(ctx context.Context, r *trailReader, topic string, p int) (PartitionReport, error) {
	rep := PartitionReport{Partition: p, First: -1, Last: -1}
	first, end, err := r.bounds(ctx, topic, p)
	if err != nil || first >= end {
		return rep, err
	}
	rep.Anchored = first > 0
	// Each Sluice instance (the record's "proxy") keeps its own chain in
	// the partition, so a clone set can share a topic.
	type chainTip struct {
		prev   [32]byte
		sealed []byte
		seen   bool
	}
	tips := map[string]*chainTip{}
	err = r.readRange(ctx, topic, p, first, end, func(offset int64, value []byte) {
		if rep.First < 0 {
			rep.First = offset
		}
		rep.Last = offset
		record, chain, ok := unchainRecord(value)
		if !ok {
			rep.Unchained++
			rep.Problems = append(rep.Problems, fmt.Sprintf("offset %d: record without a chain value", offset))
			return
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
		case bytes.Equal(value, tip.sealed):
			rep.Duplicates++ // delivered twice
			return
		default:
			if chainSum(tip.prev, record) != chain {
				rep.Problems = append(rep.Problems, fmt.Sprintf(
					"offset %d: chain broken (records of %q): this record was altered, or records before it were removed", offset, proxy))
			}
		}
		tip.prev, tip.sealed, tip.seen = chain, value, true
		rep.Verified++
	})
	if err != nil {
		return rep, fmt.Errorf("partition %d: %w", p, err)
	}
	return rep, nil
}
