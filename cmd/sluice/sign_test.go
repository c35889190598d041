package main_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// signedLab is a Sluice that signs checkpoints of its trail, and the key
// pair (made by openssl, as the README says).
type signedLab struct {
	*instance
	topic, pub string
}

func startSigned(t *testing.T, topic string) *signedLab { return startSignedWith(t, topic, "") }

// startSignedWith adds genlog keys (each line indented by two spaces).
func startSignedWith(t *testing.T, topic, genlog string) *signedLab {
	t.Helper()
	dir := t.TempDir()
	key, pub := filepath.Join(dir, "sluice.key"), filepath.Join(dir, "sluice.pub")
	for _, args := range [][]string{{"genpkey", "-algorithm", "ed25519", "-out", key}, {"pkey", "-in", key, "-pubout", "-out", pub}} {
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	in := startInstance(t, fmt.Sprintf("name: signer\nadmin_token: tok\ngenlog:\n  enabled: true\n  topic: %s\n  signing_key: %s\n  checkpoint_interval: 100ms\n%s", topic, key, genlog))
	return &signedLab{instance: in, topic: topic, pub: pub}
}

// sessions opens n sessions, each running a query: records in several
// partitions (the key is the session id).
func (l *signedLab) sessions(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		db, err := sql.Open("mysql", l.dsn("app", "apppass", "app"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("SELECT ?", i); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
}

// verify runs sluice audit verify --public-key against broker, with extra
// flags; it returns the output and the exit status.
func (l *signedLab) verify(t *testing.T, broker string, extra ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"audit", "verify", "--brokers", broker, "--topic", l.topic, "--public-key", l.pub}, extra...)
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// settled waits until a checkpoint covers every record and verify passes.
func (l *signedLab) settled(t *testing.T) string { return l.settledOn(t, l.broker) }

func (l *signedLab) settledOn(t *testing.T, broker string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, code := l.verify(t, broker)
		if code == 0 && strings.Contains(out, "ok: ") && !strings.Contains(out, "not proven") {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoints covering the whole trail after 20s; verify says:\n%s", out)
		}
	}
}

// startCovered starts a signing Sluice, writes records until a checkpoint
// covers them all, and returns an outsider's client and the last record of
// the fullest partition, for the outsider to attack.
func startCovered(t *testing.T, topic string) (*signedLab, *kgo.Client, *kgo.Record) {
	t.Helper()
	l := startSigned(t, topic)
	l.sessions(t, 6)
	l.settled(t)
	cl := l.client(t)
	return l, cl, l.lastRecord(t, cl)
}

// named waits, while Sluice writes on (so that its next checkpoint covers
// what an attacker appended), until verify exits 1 saying want.
func (l *signedLab) named(t *testing.T, want string) {
	t.Helper()
	var out string
	lab.WaitFor(t, "verify to say "+want, 30*time.Second, func() bool {
		l.sessions(t, 2)
		var code int
		out, code = l.verify(t, l.broker)
		return code == 1 && strings.Contains(out, want)
	})
	t.Logf("verify:\n%s", out)
}

func (l *signedLab) client(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(l.broker), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// lastRecord is the last record of a partition, read with franz-go.
func (l *signedLab) lastRecord(t *testing.T, cl *kgo.Client) *kgo.Record {
	t.Helper()
	cons, err := kgo.NewClient(kgo.SeedBrokers(l.broker), kgo.ConsumeTopics(l.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	last := map[int32]*kgo.Record{}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cons.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if last[r.Partition] == nil || r.Offset > last[r.Partition].Offset {
				last[r.Partition] = r
			}
		})
		if n == 0 {
			break
		}
	}
	var best *kgo.Record
	for _, r := range last {
		if best == nil || r.Offset > best.Offset {
			best = r // the partition with the most records
		}
	}
	if best == nil {
		t.Fatal("no records")
	}
	return best
}

// brokerAlone starts `sluice broker` on the stopped Sluice's broker data
// and address: the trail without Sluice writing to it.
func (l *signedLab) brokerAlone(t *testing.T) {
	t.Helper()
	cfg := filepath.Join(filepath.Dir(l.config), "broker.yaml")
	data := filepath.Join(filepath.Dir(l.config), "broker")
	os.WriteFile(cfg, []byte(fmt.Sprintf("broker:\n  listen: %s\n  data_dir: %s\n", l.broker, data)), 0o600)
	lab.StartProcess(t, "sluice broker", func() bool {
		c, err := net.DialTimeout("tcp", l.broker, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, binary, "broker", "--config", cfg)
}

// deleteTopic deletes the trail's topic with one admin request.
func (l *signedLab) deleteTopic(t *testing.T, cl *kgo.Client) {
	t.Helper()
	if code := l.tryDeleteTopic(t, cl); code != 0 {
		t.Fatalf("DeleteTopics: error code %d", code)
	}
}

// tryDeleteTopic asks to delete the trail's topic and returns the error
// code of the answer.
func (l *signedLab) tryDeleteTopic(t *testing.T, cl *kgo.Client) int16 {
	t.Helper()
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.TopicNames = []string{l.topic}
	rt := kmsg.NewDeleteTopicsRequestTopic()
	rt.Topic = &l.topic
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Topics) != 1 {
		t.Fatalf("DeleteTopics: %v %+v", err, resp)
	}
	return resp.Topics[0].ErrorCode
}

// allRecords reads the whole trail with franz-go, in partition and offset
// order.
func (l *signedLab) allRecords(t *testing.T) []*kgo.Record {
	t.Helper()
	cons, err := kgo.NewClient(kgo.SeedBrokers(l.broker), kgo.ConsumeTopics(l.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var all []*kgo.Record
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cons.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { n++; all = append(all, r) })
		if n == 0 {
			break
		}
	}
	slices.SortFunc(all, func(a, b *kgo.Record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	if len(all) == 0 {
		t.Fatal("no records")
	}
	return all
}

func (l *signedLab) produce(t *testing.T, cl *kgo.Client, partition int32, value []byte) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: l.topic, Partition: partition, Value: value}).First()
	if err != nil {
		t.Fatal(err)
	}
	return r.Offset
}

// forge makes the record an outsider appends after prev: prev's content
// with the user changed, and the chain recomputed as the unkeyed scheme
// says (SHA-256 of prev's chain and the record).
func forge(t *testing.T, prev []byte) []byte {
	t.Helper()
	const field = `,"chain":"`
	at := bytes.LastIndex(prev, []byte(field))
	if at < 0 {
		t.Fatalf("no chain in %s", prev)
	}
	chain, err := hex.DecodeString(string(prev[at+len(field) : len(prev)-2]))
	if err != nil {
		t.Fatal(err)
	}
	body := append(append([]byte(nil), prev[:at]...), '}')
	body = regexp.MustCompile(`"user":"[^"]*"`).ReplaceAll(body, []byte(`"user":"eve"`))
	h := sha256.New()
	h.Write(chain)
	h.Write(body)
	return append(append(body[:len(body)-1], field+hex.EncodeToString(h.Sum(nil))...), '"', '}')
}

// The attacks of issue 18, by a real Kafka client (franz-go) against a
// real Sluice with its bundled broker: each makes verify --public-key exit
// 1 and name what happened; the untouched trail verifies.
func TestAuditVerifySignedAttacks(t *testing.T) {
	t.Run("untouched", func(t *testing.T) {
		l := startSigned(t, "sign.untouched")
		l.sessions(t, 6)
		out := l.settled(t)
		if !strings.Contains(out, "records verified against signed checkpoints") {
			t.Fatalf("verify: %s", out)
		}
		// The admin API's checkpoints are an anchor verify takes.
		req, _ := http.NewRequest("GET", "http://"+l.admin+"/v1/audit/checkpoint", nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"sig"`)) {
			t.Fatalf("GET /v1/audit/checkpoint: %d %s", resp.StatusCode, body)
		}
		anchor := filepath.Join(t.TempDir(), "anchor.json")
		os.WriteFile(anchor, body, 0o600)
		if out, code := l.verify(t, l.broker, "--checkpoint", anchor); code != 0 {
			t.Fatalf("verify with the anchor: exit %d\n%s", code, out)
		}
		// sluice ctl checkpoint prints the same.
		if out, err := l.ctl(t, "tok", "checkpoint"); err != nil || !strings.Contains(out, `"sig"`) {
			t.Fatalf("sluice ctl checkpoint: %v\n%s", err, out)
		}
		// Unkeyed, it says what it does not prove.
		if out, err := runVerify(t, l.broker, l.topic); err != nil || !strings.Contains(out, "not who wrote them") {
			t.Fatalf("unkeyed verify: %v\n%s", err, out)
		}
	})

	t.Run("forged record", func(t *testing.T) {
		l, cl, last := startCovered(t, "sign.forged")
		off := l.produce(t, cl, last.Partition, forge(t, last.Value))
		// The unkeyed chain is fooled: that is the attack.
		if out, err := runVerify(t, l.broker, l.topic); err != nil {
			t.Fatalf("unkeyed verify should accept a recomputed chain (the weakness signed checkpoints fix): %v\n%s", err, out)
		}
		// Not covered yet: reported, not verified.
		if out, _ := l.verify(t, l.broker); !strings.Contains(out, "not yet covered") {
			t.Fatalf("verify before the next checkpoint: %s", out)
		}
		l.named(t, fmt.Sprintf("partition %d: offset %d: not on the signed chain of \"signer\"", last.Partition, off))
	})

	t.Run("duplicated record", func(t *testing.T) {
		l, cl, last := startCovered(t, "sign.dup")
		off := l.produce(t, cl, last.Partition, last.Value)
		l.named(t, fmt.Sprintf("partition %d: offset %d: a copy of the record at offset %d", last.Partition, off, last.Offset))
	})

	t.Run("cut short", func(t *testing.T) {
		l := startSigned(t, "sign.cut")
		l.sessions(t, 6)
		l.settled(t)
		l.sessions(t, 6)                  // the last batches, which the cut removes
		l.Process.Signal(syscall.SIGTERM) //: the producer signs its last checkpoints at Close
		if err := l.Process.Wait(30 * time.Second); err != nil {
			t.Fatalf("sluice stop: %v", err)
		}
		// The broker is down: cut the end off the last segment of every
		// partition that has records; recovery drops the torn batch.
		data := filepath.Join(filepath.Dir(l.config), "broker")
		logs, _ := filepath.Glob(filepath.Join(data, l.topic+"-*", "*.log"))
		cut := 0
		for _, f := range logs {
			if st, err := os.Stat(f); err == nil && st.Size() > 0 {
				os.Truncate(f, st.Size()-10)
				cut++
			}
		}
		if cut == 0 {
			t.Fatalf("no segment files in %s", data)
		}
		l.brokerAlone(t)
		out, code := l.verify(t, l.broker)
		if code != 1 || !strings.Contains(out, "cut short") {
			t.Fatalf("verify of a trail cut short: exit %d\n%s", code, out)
		}
		t.Logf("verify:\n%s", out)
	})

	// An outsider who can delete and produce rewrites the topic: every
	// record back in its partition and order, but one altered, or one in
	// the middle left out.
	for _, attack := range []struct {
		name string
		edit func(value []byte) (out []byte, keep bool)
		want string
	}{
		{"altered record", func(v []byte) ([]byte, bool) {
			return regexp.MustCompile(`"user":"[^"]*"`).ReplaceAll(v, []byte(`"user":"eve"`)), true
		}, "altered"},
		{"removed record", func([]byte) ([]byte, bool) { return nil, false }, "records of \"signer\" were removed between them (1 missing"},
	} {
		t.Run(attack.name, func(t *testing.T) {
			l := startSigned(t, "sign."+strings.ReplaceAll(attack.name, " ", "-"))
			l.sessions(t, 6)
			l.settled(t)
			l.Process.Signal(syscall.SIGTERM) // Sluice stops: nothing but the outsider writes now
			if err := l.Process.Wait(30 * time.Second); err != nil {
				t.Fatalf("sluice stop: %v", err)
			}
			l.brokerAlone(t)
			cl := l.client(t)
			records := l.allRecords(t)
			l.deleteTopic(t, cl)
			// The middle record of the fullest partition is the one edited.
			var target *kgo.Record
			for _, r := range records {
				if target == nil || r.Offset > target.Offset {
					target = r
				}
			}
			middle := target.Offset / 2
			edited := false
			for _, r := range records {
				v := r.Value
				if r.Partition == target.Partition && r.Offset == middle {
					var keep bool
					if v, keep = attack.edit(v); !keep {
						edited = true
						continue
					}
					edited = !bytes.Equal(v, r.Value)
				}
				l.produce(t, cl, r.Partition, v)
			}
			if !edited {
				t.Fatalf("the attack changed nothing at partition %d offset %d", target.Partition, middle)
			}
			out, code := l.verify(t, l.broker)
			named := fmt.Sprintf("partition %d: offset %d: %s", target.Partition, middle, attack.want)
			if attack.name == "removed record" {
				named = fmt.Sprintf("partition %d: offsets %d..%d: %s", target.Partition, middle-1, middle, attack.want)
			}
			if code != 1 || !strings.Contains(out, named) || strings.Contains(out, "not on the signed chain") {
				t.Fatalf("verify of a trail with an %s at partition %d offset %d: exit %d, want 1 naming only %q\n%s", attack.name, target.Partition, middle, code, named, out)
			}
			t.Logf("verify:\n%s", out)
		})
	}

	t.Run("deleted topic", func(t *testing.T) {
		l := startSigned(t, "sign.deleted")
		l.sessions(t, 6)
		l.settled(t)
		// Sluice's broker keeps its audit topics append-only...
		if code := l.tryDeleteTopic(t, l.client(t)); code != kerr.TopicDeletionDisabled.Code {
			t.Fatalf("DeleteTopics of the trail on Sluice's broker: error code %d, want TOPIC_DELETION_DISABLED", code)
		}
		// ...so the outsider deletes it through a broker that does not
		// know the topic as Sluice's trail.
		l.Process.Signal(syscall.SIGTERM)
		if err := l.Process.Wait(30 * time.Second); err != nil {
			t.Fatalf("sluice stop: %v", err)
		}
		l.brokerAlone(t)
		l.deleteTopic(t, l.client(t))
		out, code := l.verify(t, l.broker)
		if code != 1 || !strings.Contains(out, "deleted") {
			t.Fatalf("verify of a deleted topic: exit %d\n%s", code, out)
		}
		t.Logf("verify:\n%s", out)
	})
}

// TestAuditVerifySignedAfterSpill: a Kafka-protocol broker of its own
// (the kafka-go writer, whose completions give the offsets) is killed
// while records flow; records and checkpoints wait in the spill file and
// go out in order once it is back: the trail verifies with the key.
func TestAuditVerifySignedAfterSpill(t *testing.T) {
	dir := t.TempDir()
	brokerAddr := lab.FreeAddr(t)
	broker := startBroker(t, brokerAddr, dir)
	defer func() { broker.Process.Kill(); broker.Wait() }()
	l := startSignedWith(t, "sign.spill", fmt.Sprintf("  brokers: [%s]\n  on_full: spill\n  spill_file: %s\n", brokerAddr, filepath.Join(dir, "genlog.spill")))
	l.sessions(t, 4)
	l.settledOn(t, brokerAddr)
	perSession := len(readTopic(t, brokerAddr, l.topic, func([]record) bool { return true })) / 4
	broker.Process.Signal(syscall.SIGKILL)
	broker.Wait()
	l.sessions(t, 8) // spilled, with the checkpoints due meanwhile
	broker = startBroker(t, brokerAddr, dir)
	l.sessions(t, 4)
	readTopic(t, brokerAddr, l.topic, func(rs []record) bool { return len(rs) >= 16*perSession })
	out := l.settledOn(t, brokerAddr)
	covered := 0
	for _, m := range regexp.MustCompile(`(\d+) records verified against signed checkpoints`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		covered += n
	}
	if perSession == 0 || covered != 16*perSession {
		t.Fatalf("verify covers %d records, want %d:\n%s", covered, 16*perSession, out)
	}
	t.Logf("verify:\n%s", out)
}
