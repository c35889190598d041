package audit

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/tidwall/gjson"
)

// SignedOptions are what VerifySigned checks the trail against.
type SignedOptions struct {
	Kafka Kafka
	Topic string
	// Keys are the public keys of the instances that write the trail.
	Keys []ed25519.PublicKey
	// Anchor holds checkpoints saved elsewhere (GET /v1/audit/checkpoint).
	Anchor []Checkpoint
}

// SignedReport is what VerifySigned found.
type SignedReport struct {
	// Checkpoints counts the checkpoints whose signature verified.
	Checkpoints int
	Partitions  []SignedPartition
	// Problems are about the trail as a whole (each names what it is about).
	Problems []string
}

// SignedPartition is what VerifySigned found in one partition.
type SignedPartition struct {
	Partition int
	// Covered are the records on a signed chain up to its newest
	// checkpoint; Uncovered those after it (written since: not proven yet).
	Covered, Uncovered int
	// Newest describes the newest checkpoint per instance, for people.
	Newest []string
	// Expired counts records of a signed chain before the partition's
	// first kept record (retention; on a Kafka cluster, or DeleteRecords).
	Expired  int64
	Problems []string
}

// Ok reports whether nothing is wrong.
func (r *SignedReport) Ok() bool {
	if len(r.Problems) > 0 {
		return false
	}
	for _, p := range r.Partitions {
		if len(p.Problems) > 0 {
			return false
		}
	}
	return true
}

// LoadAnchor reads checkpoints saved from GET /v1/audit/checkpoint.
func LoadAnchor(path string) ([]Checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cps []Checkpoint
	if err := json.Unmarshal(b, &cps); err != nil {
		return nil, fmt.Errorf("%s: not the JSON of GET /v1/audit/checkpoint: %v", path, err)
	}
	return cps, nil
}

// chainNode is a record of one instance in a partition, linked to the
// record its chain value follows.
type chainNode struct {
	offset int64
	chain  [32]byte
	parent *chainNode
	// depth counts the records from the root of its path; rootKind says
	// what that root is.
	depth    int64
	rootKind int
}

const (
	rootStart  = iota // chains from zero: the instance's first record there
	rootAnchor        // the first record kept (older ones expired)
	rootOrphan        // follows no record present
)

func (n *chainNode) root() *chainNode {
	for n.parent != nil {
		n = n.parent
	}
	return n
}

// VerifySigned checks the trail against the signed checkpoints of
// <topic>.checkpoints and the anchor: every record up to the newest
// checkpoint of its instance must be on the chain that checkpoint signs,
// and that chain whole. See doc.go.
func VerifySigned(ctx context.Context, opts SignedOptions) (*SignedReport, error) {
	rep := &SignedReport{}
	// The checkpoints, per instance and partition of opts.Topic.
	type seqKey struct {
		proxy string
		part  int
	}
	cps := map[seqKey][]Checkpoint{}
	seen := map[string]bool{}
	add := func(c Checkpoint, where string) {
		if c.Topic != opts.Topic {
			return
		}
		if !c.Verify(opts.Keys) {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: a checkpoint not signed by any given --public-key (proxy %q, partition %d): forged, or give that instance's key", where, c.Proxy, c.Partition))
			return
		}
		if h := c.Hash(); !seen[h] {
			seen[h] = true
			rep.Checkpoints++
			k := seqKey{c.Proxy, c.Partition}
			cps[k] = append(cps[k], c)
		}
	}
	rd, err := opts.Kafka.reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	cpTopic := CheckpointTopic(opts.Topic)
	if parts, err := rd.partitions(ctx, cpTopic, false); err == nil {
		for _, p := range parts {
			err := scanForward(ctx, rd, cpTopic, p, -1, func(offset int64, v []byte) {
				var c Checkpoint
				if json.Unmarshal(v, &c) != nil || c.Type != "checkpoint" {
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s partition %d offset %d: not a checkpoint", cpTopic, p, offset))
					return
				}
				add(c, fmt.Sprintf("%s partition %d offset %d", cpTopic, p, offset))
			})
			if err != nil {
				return nil, err
			}
		}
	}
	for i, c := range opts.Anchor {
		add(c, fmt.Sprintf("anchor checkpoint %d", i+1))
	}
	if rep.Checkpoints == 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("no signed checkpoint of %s in %s or the anchor: nothing proves who wrote the records", opts.Topic, cpTopic))
	}
	for k, list := range cps {
		slices.SortFunc(list, func(a, b Checkpoint) int { return int(a.Count - b.Count) })
		hashes := map[string]bool{}
		for _, c := range list {
			hashes[c.Hash()] = true
		}
		for _, c := range list {
			if c.Prev != "" && !hashes[c.Prev] {
				rep.Problems = append(rep.Problems, fmt.Sprintf("partition %d: the checkpoint of %q before the one of %s (count %d) is missing: checkpoints were removed",
					k.part, k.proxy, c.TS, c.Count))
			}
		}
	}

	parts, err := rd.partitions(ctx, opts.Topic, false)
	if err != nil || len(parts) == 0 {
		if len(cps) > 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("topic %s is missing (deleted?) but %d signed checkpoints say it held records", opts.Topic, rep.Checkpoints))
			return rep, nil
		}
		return rep, err
	}
	have := map[int]bool{}
	for _, p := range parts {
		have[p] = true
	}
	for k, list := range cps {
		if !have[k.part] {
			rep.Problems = append(rep.Problems, fmt.Sprintf("partition %d is missing but a checkpoint of %q says it held %d records", k.part, k.proxy, list[len(list)-1].Count))
		}
	}
	for _, p := range parts {
		sp := SignedPartition{Partition: p}
		first, end, err := rd.bounds(ctx, opts.Topic, p)
		if err != nil {
			return nil, err
		}
		type rec struct {
			offset int64
			proxy  string
			node   *chainNode
			dup    int64 // offset of the record this one copies; -1
			bad    string
		}
		var recs []rec
		nodes := map[[32]byte]*chainNode{}
		recent := map[string][]*chainNode{}
		// nodesOf lists each instance's records in offset order.
		nodesOf := map[string][]*chainNode{}
		firstOf := map[string]bool{}
		err = rd.readRange(ctx, opts.Topic, p, first, end, func(offset int64, v []byte) {
			r := rec{offset: offset, dup: -1}
			record, chain, ok := unchainRecord(v)
			if !ok {
				r.bad = "a record without a chain value: not written by Sluice"
				recs = append(recs, r)
				return
			}
			r.proxy = gjson.GetBytes(record, "proxy").String()
			if n := nodes[chain]; n != nil {
				r.dup = n.offset
				recs = append(recs, r)
				return
			}
			n := &chainNode{offset: offset, chain: chain, depth: 1, rootKind: rootOrphan}
			switch {
			case chainSum([32]byte{}, record) == chain:
				n.rootKind = rootStart
			default:
				cands := recent[r.proxy]
				for i := len(cands) - 1; i >= 0; i-- {
					if chainSum(cands[i].chain, record) == chain {
						n.parent, n.depth, n.rootKind = cands[i], cands[i].depth+1, cands[i].rootKind
						break
					}
				}
				if n.parent == nil && first > 0 && !firstOf[r.proxy] {
					n.rootKind = rootAnchor
				}
			}
			firstOf[r.proxy] = true
			nodes[chain] = n
			nodesOf[r.proxy] = append(nodesOf[r.proxy], n)
			if c := append(recent[r.proxy], n); len(c) > 64 {
				recent[r.proxy] = append(c[:0:0], c[len(c)-64:]...)
			} else {
				recent[r.proxy] = c
			}
			r.node = n
			recs = append(recs, r)
		})
		if err != nil {
			return nil, err
		}
		// Per instance: the newest checkpoint whose record is here, and
		// the chain it signs.
		onPath := map[int64]bool{}
		coveredTo := map[string]int64{}
		signers := map[string]bool{}
		for k, list := range cps {
			if k.part != p {
				continue
			}
			signers[k.proxy] = true
			newest := list[len(list)-1]
			sp.Newest = append(sp.Newest, fmt.Sprintf("%s: offset %d, %d records, %s", k.proxy, newest.Offset, newest.Count, newest.TS))
			var best *chainNode
			var bestCp Checkpoint
			for i := len(list) - 1; i >= 0; i-- {
				c := list[i]
				var head [32]byte
				hb, _ := hex.DecodeString(c.Head)
				copy(head[:], hb)
				n := nodes[head]
				if n == nil {
					if best == nil {
						sp.Problems = append(sp.Problems, missingHead(c, first, end))
					}
					continue
				}
				if c.Offset >= 0 && n.offset != c.Offset {
					sp.Problems = append(sp.Problems, fmt.Sprintf("offset %d: the record the checkpoint of %s signs, expected at offset %d: records were moved or removed", n.offset, c.TS, c.Offset))
				}
				if best == nil {
					best, bestCp = n, c
				}
			}
			if best == nil {
				coveredTo[k.proxy] = max(list[len(list)-1].Offset, end-1)
				continue
			}
			coveredTo[k.proxy] = best.offset
			// Follow the signed chain back to where it starts. Where it
			// breaks (a record whose predecessor is not here), the
			// instance's records before the break are a chain of their
			// own: follow that too, so the break is named once, as an
			// altered record or records removed, and the records before
			// it are not blamed.
			var breaks []breakAt
			held := best.depth
			root := best.root()
			for n := best; n != nil; n = n.parent {
				onPath[n.offset] = true
			}
			for root.rootKind == rootOrphan {
				tip := lastBefore(nodesOf[k.proxy], root.offset, onPath)
				if tip == nil {
					break
				}
				breaks = append(breaks, breakAt{before: tip.offset, at: root.offset})
				held += tip.depth
				for n := tip; n != nil; n = n.parent {
					onPath[n.offset] = true
				}
				root = tip.root()
			}
			missing := bestCp.Count - held
			switch {
			case root.rootKind == rootOrphan:
				sp.Problems = append(sp.Problems, fmt.Sprintf("offset %d: follows no record of %q present: the records before it were removed (the checkpoint of %s signs %d records, %d are here)",
					root.offset, k.proxy, bestCp.TS, bestCp.Count, held))
			case root.rootKind == rootAnchor:
				sp.Expired += missing
				missing = 0
			case len(breaks) == 0 && missing != 0:
				sp.Problems = append(sp.Problems, fmt.Sprintf("offsets %d..%d: the checkpoint of %q signs %d records, the partition holds %d of them: records were removed",
					root.offset, best.offset, k.proxy, bestCp.Count, held))
			}
			for _, b := range breaks {
				switch {
				case len(breaks) == 1 && missing == 0:
					sp.Problems = append(sp.Problems, fmt.Sprintf("offset %d: altered: the record no longer hashes to its chain value after the record at offset %d (the checkpoint of %s signs %d records, all are here)",
						b.at, b.before, bestCp.TS, bestCp.Count))
				case len(breaks) == 1:
					sp.Problems = append(sp.Problems, fmt.Sprintf("offsets %d..%d: records of %q were removed between them (%d missing: the checkpoint of %s signs %d records, %d are here)",
						b.before, b.at, k.proxy, missing, bestCp.TS, bestCp.Count, held))
				default:
					sp.Problems = append(sp.Problems, fmt.Sprintf("offsets %d..%d: the chain of %q breaks between them: a record altered or records removed (%d of the %d records the checkpoint of %s signs are missing)",
						b.before, b.at, k.proxy, missing, bestCp.Count, bestCp.TS))
				}
			}
		}
		for _, r := range recs {
			limit, signed := coveredTo[r.proxy]
			if !signed {
				limit = -1
				for _, o := range coveredTo {
					limit = max(limit, o)
				}
			}
			switch {
			case r.offset > limit:
				sp.Uncovered++
			case onPath[r.offset]:
				sp.Covered++
			case r.bad != "":
				sp.Problems = append(sp.Problems, fmt.Sprintf("offset %d: %s", r.offset, r.bad))
			case r.dup >= 0:
				sp.Problems = append(sp.Problems, fmt.Sprintf("offset %d: a copy of the record at offset %d, not written by Sluice", r.offset, r.dup))
			case !signers[r.proxy]:
				sp.Problems = append(sp.Problems, fmt.Sprintf("offset %d: a record of %q, which signed no checkpoint here: not written by a signing instance", r.offset, r.proxy))
			default:
				sp.Problems = append(sp.Problems, fmt.Sprintf("offset %d: not on the signed chain of %q: added by someone else, or altered", r.offset, r.proxy))
			}
		}
		rep.Partitions = append(rep.Partitions, sp)
	}
	return rep, nil
}

// breakAt is where a signed chain breaks: the record at offset at follows
// no record present, and before is the last record of the same instance
// ahead of it.
type breakAt struct{ before, at int64 }

// lastBefore is the last of nodes (in offset order) before offset that no
// path has taken yet.
func lastBefore(nodes []*chainNode, offset int64, taken map[int64]bool) *chainNode {
	i, _ := slices.BinarySearchFunc(nodes, offset, func(n *chainNode, o int64) int { return cmp.Compare(n.offset, o) })
	for i--; i >= 0; i-- {
		if !taken[nodes[i].offset] {
			return nodes[i]
		}
	}
	return nil
}

// missingHead says why the record a checkpoint signs is not found.
func missingHead(c Checkpoint, first, end int64) string {
	at := fmt.Sprintf("the record the checkpoint of %q of %s signs (count %d", c.Proxy, c.TS, c.Count)
	if c.Offset >= 0 {
		at += fmt.Sprintf(", offset %d", c.Offset)
	}
	at += ")"
	switch {
	case first >= end:
		return at + " is gone: the partition is empty (cut to nothing, or the topic was deleted or emptied)"
	case c.Offset >= end:
		return fmt.Sprintf("%s is gone: the partition ends at offset %d, cut short", at, end-1)
	case c.Offset >= 0 && c.Offset < first:
		return fmt.Sprintf("%s is gone: the partition starts at offset %d", at, first)
	}
	return at + " is not there: it was altered or removed"
}

// ProvesOrder is what the unkeyed verify says it proves.
const ProvesOrder = "the chains prove the records' order, not who wrote them: anyone who can produce to the topic can extend a chain (use --public-key with genlog.signing_key)"
