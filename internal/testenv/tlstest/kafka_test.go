package tlstest

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
	"github.com/sluice-proxy/sluice/internal/testenv/testpki"
)

// kfake's cluster stands in for Apache Kafka, which no package registry of
// this machine ships: three brokers in this process, TLS with the test CA,
// SCRAM-SHA-512.
const (
	kafkaUser     = "sluice"
	kafkaPassword = "Kafka-s3cret-pw"
)

func startKafka(t *testing.T, topics ...string) *kfake.Cluster {
	t.Helper()
	srv, err := testpki.ServerTLS(pki)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.TLS(srv), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", kafkaUser, kafkaPassword), kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(3), kfake.SeedTopics(3, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// writeFile writes a file of the test's and returns its path.
func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// signingKeys writes an Ed25519 key pair as genlog.signing_key and
// `audit verify --public-key` read them.
func signingKeys(t *testing.T) (private, public string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := x509.MarshalPKCS8PrivateKey(priv)
	pp, _ := x509.MarshalPKIXPublicKey(pub)
	return writeFile(t, "signing.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})),
		writeFile(t, "signing.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pp}))
}

// queryRec is what the test reads of a query record.
type queryRec struct {
	Type    string
	Session uint64
	Seq     uint64
	User    string
	Query   string
}

// Genlog through a real Sluice and MariaDB to a three-broker Kafka cluster
// over TLS and SCRAM-SHA-512: while clients run queries, partition leaders
// move and a broker goes away; every query record arrives once, in its
// session's order, as kafka-go and kcat read it back, and `sluice audit
// verify` (with the same TLS and SASL, and the signing key) passes.
func TestGenlogToKafkaClusterExactlyOnce(t *testing.T) {
	const topic = "e2e.audit"
	c := startKafka(t, topic, topic+".checkpoints")
	brokers := c.ListenAddrs()
	pw := writeFile(t, "kafka.pw", []byte(kafkaPassword+"\n"))
	priv, pub := signingKeys(t)
	genlog := fmt.Sprintf("genlog:\n  enabled: true\n  topic: %s\n  brokers: [%s]\n  tls: {ca: %s}\n"+
		"  sasl: {mechanism: SCRAM-SHA-512, user: %s, password_file: %s}\n  compression: zstd\n  signing_key: %s\n  checkpoint_interval: 500ms\n",
		topic, strings.Join(brokers, ", "), filepath.Join(pki, "ca.pem"), kafkaUser, pw, priv)
	in := startWith(t, "service_user: {user: monitor, password: monpass}\n"+genlog, "")

	// Load: sessions run numbered statements for a bounded time while the
	// cluster moves leaders and loses a broker.
	const sessions = 6
	marker := regexp.MustCompile(`^SELECT 'e2e-(\d+)-(\d+)'$`)
	done := make([]int, sessions) // statements each session completed
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	for s := range sessions {
		wg.Go(func() {
			db := in.open(t, "false")
			db.SetMaxOpenConns(1)
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Errorf("session %d: %v", s, err)
				return
			}
			defer conn.Close()
			for i := 0; ctx.Err() == nil; i++ {
				var v string
				if err := conn.QueryRowContext(context.Background(), fmt.Sprintf("SELECT 'e2e-%d-%d'", s, i)).Scan(&v); err != nil {
					t.Errorf("session %d query %d: %v", s, i, err)
					return
				}
				done[s] = i + 1
			}
		})
	}
	// And sysbench, through the same Sluice, for the same 8 s.
	host, port, _ := net.SplitHostPort(in.listen)
	sbArgs := []string{"oltp_point_select", "--db-driver=mysql", "--mysql-host=" + host, "--mysql-port=" + port,
		"--mysql-user=sbtest", "--mysql-password=sbtest", "--mysql-db=sbtest", "--tables=1", "--table-size=1000"}
	_ = exec.Command("sysbench", append(sbArgs, "cleanup")...).Run()
	if out, err := exec.Command("sysbench", append(sbArgs, "prepare")...).CombinedOutput(); err != nil {
		t.Fatalf("sysbench prepare: %v\n%s", err, out)
	}
	var sbOut []byte
	var sbErr error
	wg.Go(func() {
		sbOut, sbErr = exec.CommandContext(context.Background(), "sysbench",
			append(sbArgs, "--threads=2", "--time=7", "--events=0", "--db-ps-mode=disable", "run")...).CombinedOutput()
	})
	moves := 0
	tick := time.NewTicker(700 * time.Millisecond)
	removed := false
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			for part := int32(0); part < 3; part++ {
				if err := c.MoveTopicPartition(topic, part, (c.LeaderFor(topic, part)+1)%3); err == nil {
					moves++
				}
			}
			if !removed && moves >= 6 {
				// One broker goes away mid-stream; its address stays in the seeds.
				if err := c.RemoveNode(c.LeaderFor(topic, 0)); err != nil {
					t.Fatal(err)
				}
				removed = true
			}
		}
	}
	tick.Stop()
	wg.Wait()
	if sbErr != nil {
		t.Fatalf("sysbench run: %v\n%s", sbErr, sbOut)
	}
	sbQueries := 0
	if m := regexp.MustCompile(`(?m)^\s+total:\s+(\d+)$`).FindSubmatch(sbOut); m != nil {
		sbQueries, _ = strconv.Atoi(string(m[1]))
	}
	if sbQueries == 0 {
		t.Fatalf("sysbench ran no queries:\n%s", sbOut)
	}
	if !removed {
		t.Fatal("the load ended before a broker was removed")
	}
	// The admin API's audit tail reads the cluster with genlog's TLS and SASL.
	tailCtx, tailCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer tailCancel()
	req, _ := http.NewRequestWithContext(tailCtx, "GET", "http://"+in.admin+"/v1/audit/tail?since=5m&where="+url.QueryEscape(`query ~ "e2e-1-0'"`), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tailed := false
	for sc := bufio.NewScanner(resp.Body); !tailed && sc.Scan(); {
		tailed = strings.HasPrefix(sc.Text(), "data: {") && strings.Contains(sc.Text(), "e2e-1-0'")
	}
	resp.Body.Close()
	tailCancel()
	if !tailed {
		t.Fatalf("GET /v1/audit/tail: %d, no record of the cluster", resp.StatusCode)
	}
	// A clean stop sends what is queued and the last checkpoints.
	if err := in.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := in.Wait(30 * time.Second); err != nil {
		t.Fatalf("sluice did not stop cleanly: %v\n%s", err, in.Stderr.Tail(3000))
	}
	if strings.Contains(in.Stderr.String(), kafkaPassword) {
		t.Fatal("the Kafka password is in Sluice's log")
	}

	// kafka-go, a client independent of Sluice's, reads every record back.
	values := lab.ReadTopic(t, lab.SecureDialer(t, filepath.Join(pki, "ca.pem"), kafkaUser, kafkaPassword), brokers, topic)
	check := func(client string, values [][]byte) {
		t.Helper()
		seen := map[[2]int]int{}
		lastSeq := map[uint64]uint64{}
		sbRecords := 0
		sbSeqs := map[[2]uint64]int{}
		for _, v := range values {
			var r queryRec
			if err := json.Unmarshal(v, &r); err != nil {
				t.Fatalf("%s: not JSON: %s", client, v)
			}
			if r.Seq <= lastSeq[r.Session] && lastSeq[r.Session] > 0 {
				t.Errorf("%s: session %d: seq %d after %d", client, r.Session, r.Seq, lastSeq[r.Session])
			}
			lastSeq[r.Session] = r.Seq
			if r.Type == "query" && r.User == "sbtest" && strings.HasPrefix(r.Query, "SELECT c FROM sbtest1 WHERE id=") {
				sbRecords++
				sbSeqs[[2]uint64{r.Session, r.Seq}]++
			}
			if m := marker.FindStringSubmatch(r.Query); r.Type == "query" && m != nil {
				s, _ := strconv.Atoi(m[1])
				i, _ := strconv.Atoi(m[2])
				seen[[2]int{s, i}]++
			}
		}
		total := 0
		for s := range sessions {
			for i := range done[s] {
				total++
				if n := seen[[2]int{s, i}]; n != 1 {
					t.Errorf("%s: session %d statement %d: %d records, want 1", client, s, i, n)
				}
			}
		}
		// sysbench's point selects: as many records as it counted queries,
		// none twice.
		for k, n := range sbSeqs {
			if n != 1 {
				t.Errorf("%s: sysbench session %d seq %d: %d records", client, k[0], k[1], n)
			}
		}
		if sbRecords != sbQueries {
			t.Errorf("%s: %d records of sysbench's point selects, sysbench counted %d queries", client, sbRecords, sbQueries)
		}
		t.Logf("%s: %d statements of %d sessions and %d of sysbench, each recorded once (%d leader moves, a broker removed)", client, total, sessions, sbRecords, moves)
	}
	// Per-session order is by partition: a session's records are in one.
	var all [][]byte
	for _, vs := range values {
		all = append(all, vs...)
	}
	check("kafka-go", all)
	// (kcat cannot be the second reader here: librdkafka finds no
	// SaslHandshake in kfake's ApiVersions answer and refuses SCRAM; the
	// bundled broker's tests use kcat.)

	// sluice audit verify, with the same TLS and SASL by flag and the
	// password from the environment, checks the chains and checkpoints.
	verify := exec.Command(binary, "audit", "verify", "--brokers", strings.Join(brokers, ","), "--topic", topic,
		"--tls-ca", filepath.Join(pki, "ca.pem"), "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", kafkaUser,
		"--public-key", pub)
	verify.Env = append(os.Environ(), "SLUICE_AUDIT_PASSWORD="+kafkaPassword)
	out, err := verify.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok:") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	// And with --config, reading genlog's settings (password file).
	cfgOnly := writeFile(t, "audit.yaml", []byte(genlog))
	out, err = exec.Command(binary, "audit", "verify", "--config", cfgOnly).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok:") {
		t.Fatalf("audit verify --config: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "audit", "search", "--config", cfgOnly, "--where", `query ~ "e2e-0-0'"`).CombinedOutput()
	if err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), "e2e-0-0") {
		t.Fatalf("audit search --config: %v\n%s", err, out)
	}

	// What an auditor gets wrong is named: the flag to fix, the broker.
	secured := []string{"audit", "search", "--brokers", strings.Join(brokers, ","), "--topic", topic,
		"--tls-ca", filepath.Join(pki, "ca.pem"), "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", kafkaUser}
	missing := filepath.Join(t.TempDir(), "missing.pw")
	out, err = exec.Command(binary, append(secured, "--sasl-password-file", missing)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--sasl-password-file (or SLUICE_AUDIT_PASSWORD): cannot read it") || !strings.Contains(string(out), missing) {
		t.Fatalf("a missing --sasl-password-file: %v\n%s", err, out)
	}
	const wrongPassword = "Wrong-pa55word"
	search := exec.Command(binary, secured...)
	search.Env = append(os.Environ(), "SLUICE_AUDIT_PASSWORD="+wrongPassword)
	out, err = search.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--sasl-password-file") || !strings.Contains(string(out), "SCRAM-SHA-512 authentication") ||
		strings.Contains(string(out), wrongPassword) || !strings.Contains(string(out), "127.0.0.1:") {
		t.Fatalf("a wrong password: %v\n%s", err, out)
	}
	t.Logf("a wrong password: %s", strings.TrimSpace(string(out)))
}

// A Sluice whose Kafka password is wrong, or whose CA did not sign the
// brokers' certificates, still serves (the records wait in the spill file)
// and says in its log which broker refused it and which setting to fix,
// without the password.
func TestGenlogKafkaSecurityErrorsInLog(t *testing.T) {
	c := startKafka(t, "bad.audit")
	brokers := strings.Join(c.ListenAddrs(), ", ")
	const wrong = "Wrong-kafka-pa55"
	for _, tc := range []struct{ name, ca, password, want string }{
		{"wrong password", "ca.pem", wrong, "during SASL SCRAM-SHA-512 authentication of user"},
		{"untrusted CA", "other-ca.pem", kafkaPassword, "its TLS certificate is not signed by the CA in genlog.tls.ca"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pw := writeFile(t, "kafka.pw", []byte(tc.password+"\n"))
			in := startWith(t, fmt.Sprintf("service_user: {user: monitor, password: monpass}\ngenlog:\n  enabled: true\n  topic: bad.audit\n  brokers: [%s]\n"+
				"  tls: {ca: %s}\n  sasl: {mechanism: SCRAM-SHA-512, user: %s, password_file: %s}\n",
				brokers, filepath.Join(pki, tc.ca), kafkaUser, pw), "")
			var one int
			if err := in.open(t, "false").QueryRow("SELECT 1").Scan(&one); err != nil {
				t.Fatalf("query while the trail's brokers refuse Sluice: %v", err)
			}
			lab.WaitFor(t, "the log to name the problem", 40*time.Second, func() bool {
				return strings.Contains(in.Stderr.String(), tc.want)
			})
			log := in.Stderr.String()
			if !strings.Contains(log, "127.0.0.1:") {
				t.Errorf("the log names no broker:\n%s", in.Stderr.Tail(3000))
			}
			if strings.Contains(log, wrong) || strings.Contains(log, kafkaPassword) {
				t.Errorf("a password is in the log")
			}
		})
	}
}

// With the bundled broker secured (broker.tls, broker.sasl, broker.acls),
// genlog.tls and genlog.sasl are how Sluice reads the partition tails it
// chains from and how the admin API's tail reads: Sluice records queries,
// and an auditor with the same settings verifies the trail.
func TestGenlogToSecuredBundledBroker(t *testing.T) {
	dir := t.TempDir()
	pw := writeFile(t, "sluice.pw", []byte(kafkaPassword+"\n"))
	listen, admin, broker := lab.FreeAddr(t), lab.FreeAddr(t), lab.FreeAddr(t)
	const topic = "secure.genlog"
	cfg := fmt.Sprintf(`listen: %s
admin_listen: %s
servers:
%sservice_user: {user: monitor, password: monpass}
monitor: {interval: 200ms}
broker:
  enabled: true
  listen: %s
  data_dir: %s
  tls: {cert: %s, key: %s}
  sasl:
    mechanisms: [SCRAM-SHA-512]
    users: [{name: %s, password_file: %s}]
  acls:
    - {principal: %s, operations: [read, write, describe, create], topics: [%s, %s.checkpoints, sluice.events], groups: ["*"]}
genlog:
  enabled: true
  topic: %s
  tls: {ca: %s}
  sasl: {mechanism: SCRAM-SHA-512, user: %s, password_file: %s}
`, listen, admin, lab.ServersYAML(topo.Servers(), nil), broker, filepath.Join(dir, "broker"),
		filepath.Join(pki, "server.pem"), filepath.Join(pki, "server-key.pem"), kafkaUser, pw,
		kafkaUser, topic, topic, topic, filepath.Join(pki, "ca.pem"), kafkaUser, pw)
	path := writeFile(t, "sluice.yaml", []byte(cfg))
	in := &instance{listen: listen, admin: admin, broker: broker}
	in.Process = lab.StartProcess(t, "sluice", func() bool { return lab.Healthy(admin) }, binary, "serve", "--config", path)
	db := in.open(t, "false")
	for i := range 20 {
		var v string
		if err := db.QueryRow(fmt.Sprintf("SELECT 'secure-%d'", i)).Scan(&v); err != nil {
			t.Fatal(err)
		}
	}
	// A restart chains on from the tails it reads through TLS and SASL.
	if err := in.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := in.Wait(30 * time.Second); err != nil {
		t.Fatalf("sluice did not stop cleanly: %v\n%s", err, in.Stderr.Tail(3000))
	}
	in.Start()
	var v string
	if err := in.open(t, "false").QueryRow("SELECT 'secure-after-restart'").Scan(&v); err != nil {
		t.Fatal(err)
	}
	lab.WaitFor(t, "the records through the secured broker", 30*time.Second, func() bool {
		out, err := exec.Command(binary, "audit", "search", "--config", path, "--where", `query ~ "secure-"`).Output()
		return err == nil && strings.Count(string(out), "\n") == 21
	})
	verify := exec.Command(binary, "audit", "verify", "--brokers", broker, "--topic", topic, "--tls-ca", filepath.Join(pki, "ca.pem"),
		"--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", kafkaUser, "--sasl-password-file", pw)
	out, err := verify.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok:") || strings.Contains(string(out), " 1 duplicates") {
		t.Fatalf("audit verify against the secured broker: %v\n%s", err, out)
	}
	if strings.Contains(in.Stderr.String(), kafkaPassword) {
		t.Fatal("the password is in Sluice's log")
	}
}
