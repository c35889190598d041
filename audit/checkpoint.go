package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

// Checkpoint pins one Sluice instance's chain in one partition of the
// trail: signed with the instance's Ed25519 key, it says which record was
// its last there (Offset, its chain value Head) and how many of its records
// the partition holds up to it (Count). See doc.go for what that proves.
type Checkpoint struct {
	Type      string `json:"type"` // "checkpoint"
	Proxy     string `json:"proxy"`
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	// Offset is the offset of the last record covered; -1 when the writer
	// did not learn it (then Count and Head alone pin the chain).
	Offset int64 `json:"offset"`
	// Count is how many records of Proxy's chain the partition holds up to
	// and including the one at Offset.
	Count int64 `json:"count"`
	// Head is the chain value of the record at Offset (hex).
	Head string `json:"head"`
	// Prev is the Hash of the previous checkpoint of the same instance,
	// topic and partition; empty for the first.
	Prev string `json:"prev"`
	TS   string `json:"ts"`
	// Key is the signer's public key (hex), Sig the Ed25519 signature
	// (base64) of SignedBytes.
	Key string `json:"key"`
	Sig string `json:"sig"`
}

// CheckpointTopic is where the checkpoints of topic's records go.
func CheckpointTopic(topic string) string { return topic + ".checkpoints" }

// checkpointDomain separates the signed bytes from anything else the key
// might ever sign.
const checkpointDomain = "sluice-checkpoint-v1\n"

// SignedBytes is the canonical encoding the signature covers: the domain
// line and the checkpoint's JSON without its signature (encoding/json
// writes the fields in their declared order, so the verifier re-encodes
// the same bytes from the fields it parsed).
func (c *Checkpoint) SignedBytes() []byte {
	cc := *c
	cc.Sig = ""
	b, _ := json.Marshal(cc)
	return append([]byte(checkpointDomain), b...)
}

// Hash identifies a checkpoint for the next one's Prev.
func (c *Checkpoint) Hash() string {
	sum := sha256.Sum256(c.SignedBytes())
	return hex.EncodeToString(sum[:])
}

func (c *Checkpoint) sign(key ed25519.PrivateKey) {
	c.Key = hex.EncodeToString(key.Public().(ed25519.PublicKey))
	c.Sig = ""
	c.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SignedBytes()))
}

// Verify reports whether one of keys signed c.
func (c *Checkpoint) Verify(keys []ed25519.PublicKey) bool {
	sig, err := base64.StdEncoding.DecodeString(c.Sig)
	if err != nil {
		return false
	}
	for _, k := range keys {
		if hex.EncodeToString(k) == c.Key && ed25519.Verify(k, c.SignedBytes(), sig) {
			return true
		}
	}
	return false
}

// cpKey names one partition of one topic.
type cpKey struct {
	topic string
	part  int
}

// cpState is what the producer knows of its chain in one partition since
// its last checkpoint there.
type cpState struct {
	count  int64
	head   [32]byte
	offset int64
	prev   string
	dirty  bool
}

// noteWritten records, after a write, each partition's chain head, count
// and the offset of its last record. A partition whose new records were all
// stored by an earlier failed write (skipped, see resolveInDoubt) has a new
// count and head too, at an offset the producer does not know.
func (p *Producer) noteWritten(sent []Record) {
	if p.signer == nil {
		return
	}
	last := map[cpKey]*Record{}
	for i := range sent {
		last[cpKey{sent[i].Topic, sent[i].Partition}] = &sent[i]
	}
	for topic, st := range p.chains {
		for part, count := range st.count {
			k := cpKey{topic, part}
			cs := p.cp[k]
			if cs == nil || cs.count == count {
				continue
			}
			cs.count, cs.head, cs.dirty, cs.offset = count, st.last[part], true, -1
			if r := last[k]; r != nil {
				if c, ok := chainValue(r.Value); ok && c == cs.head {
					cs.offset = r.Offset
				}
			}
		}
	}
}

// dueCheckpoints signs a checkpoint for each partition written to since
// the last ones, as records for the checkpoints topic; done marks them
// delivered (or spilled).
func (p *Producer) dueCheckpoints(now time.Time) (recs []Record, done func()) {
	var made []Checkpoint
	var keys []cpKey
	for k, cs := range p.cp {
		if !cs.dirty {
			continue
		}
		c := Checkpoint{Type: "checkpoint", Proxy: p.chainOwner, Topic: k.topic, Partition: k.part, Offset: cs.offset,
			Count: cs.count, Head: hex.EncodeToString(cs.head[:]), Prev: cs.prev, TS: now.UTC().Format(time.RFC3339Nano)}
		c.sign(p.signer)
		b, _ := json.Marshal(c)
		recs = append(recs, Record{Topic: CheckpointTopic(k.topic), Key: []byte(p.chainOwner + "/" + strconv.Itoa(k.part)), Value: b})
		made, keys = append(made, c), append(keys, k)
	}
	return recs, func() {
		p.cpMu.Lock()
		defer p.cpMu.Unlock()
		for i, k := range keys {
			cs := p.cp[k]
			cs.prev, cs.dirty = made[i].Hash(), false
			p.cpLatest[k] = made[i]
		}
	}
}

// Checkpoints are the latest signed checkpoints, one per partition written
// to: an anchor an auditor keeps elsewhere (GET /v1/audit/checkpoint).
func (p *Producer) Checkpoints() []Checkpoint {
	p.cpMu.Lock()
	defer p.cpMu.Unlock()
	out := make([]Checkpoint, 0, len(p.cpLatest))
	for _, c := range p.cpLatest {
		out = append(out, c)
	}
	sortCheckpoints(out)
	return out
}

// Signing reports whether the producer signs checkpoints.
func (p *Producer) Signing() bool { return p.signer != nil }

func sortCheckpoints(cs []Checkpoint) {
	slices.SortFunc(cs, func(a, b Checkpoint) int {
		switch {
		case a.Topic != b.Topic:
			return strings.Compare(a.Topic, b.Topic)
		case a.Proxy != b.Proxy:
			return strings.Compare(a.Proxy, b.Proxy)
		case a.Partition != b.Partition:
			return a.Partition - b.Partition
		}
		return int(a.Count - b.Count)
	})
}

// resumeCheckpoints finds, for a partition the producer starts writing to,
// its newest checkpoint there and counts its records after it, so that the
// count and the checkpoints' chain carry on across restarts. Without a
// checkpoint (the first start with a key) it counts from the partition's
// first record.
func (p *Producer) resumeCheckpoints(ctx context.Context, r *trailReader, topic string, part int, st *chainState) error {
	var last *Checkpoint
	parts, err := r.partitions(ctx, CheckpointTopic(topic), true)
	if err == nil && len(parts) == 0 {
		parts, err = r.partitions(ctx, CheckpointTopic(topic), true)
	}
	if err != nil {
		return err
	}
	pub := hex.EncodeToString(p.signer.Public().(ed25519.PublicKey))
	for _, cp := range parts {
		err := scanBack(ctx, r, CheckpointTopic(topic), cp, func(v []byte) bool {
			if gjson.GetBytes(v, "proxy").String() != p.chainOwner || gjson.GetBytes(v, "partition").Int() != int64(part) ||
				gjson.GetBytes(v, "topic").String() != topic || gjson.GetBytes(v, "key").String() != pub {
				return false
			}
			var c Checkpoint
			if json.Unmarshal(v, &c) != nil || !c.Verify([]ed25519.PublicKey{p.signer.Public().(ed25519.PublicKey)}) {
				return false
			}
			if last == nil || c.Count > last.Count {
				last = &c
			}
			return true
		})
		if err != nil {
			return err
		}
	}
	cs := &cpState{offset: -1}
	from := int64(-1)
	if last != nil && last.Offset >= 0 {
		cs.prev, cs.count, from = last.Hash(), last.Count, last.Offset
	}
	var head [32]byte
	found, began := from < 0, false
	err = scanForward(ctx, r, topic, part, from, func(offset int64, v []byte) {
		if !began && !found && offset > from {
			// Retention removed the record the checkpoint covers last:
			// every record kept is after it.
			found = true
		}
		began = true
		if gjson.GetBytes(v, "proxy").String() != p.chainOwner {
			return
		}
		c, ok := chainValue(v)
		if !ok {
			return
		}
		if !found {
			// The record the checkpoint covers last.
			found = offset == from && hex.EncodeToString(c[:]) == last.Head
			head = c
			return
		}
		cs.count++
		cs.offset, head = offset, c
	})
	if err != nil {
		return err
	}
	if !found {
		p.log.Warn("the record of the last checkpoint is not where it says; counting the partition's records from its start",
			"topic", topic, "partition", part, "offset", from)
		cs = &cpState{offset: -1, prev: last.Hash()}
		if err := scanForward(ctx, r, topic, part, -1, func(offset int64, v []byte) {
			if c, ok := chainValue(v); ok && gjson.GetBytes(v, "proxy").String() == p.chainOwner {
				cs.count++
				cs.offset, head = offset, c
			}
		}); err != nil {
			return err
		}
	}
	if last != nil && cs.count == last.Count {
		cs.offset = last.Offset
	}
	cs.head = head
	cs.dirty = last == nil && cs.count > 0 || last != nil && cs.count != last.Count
	st.count[part] = cs.count
	p.cp[cpKey{topic, part}] = cs
	if cs.count > 0 {
		st.last[part] = head // the forward scan saw every record
	}
	return nil
}
