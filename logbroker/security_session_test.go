package logbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// dialTLS opens a raw TLS connection to the secured broker.
func (e *secureEnv) dialTLS(t *testing.T) net.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.addr, e.tlsConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	return c
}

// rawCall sends req (its version already set) on c and decodes the answer.
func rawCall[R kmsg.Response](c net.Conn, req kmsg.Request, corr int32) (R, error) {
	var zero R
	if _, err := c.Write(rawFrame(req, corr)); err != nil {
		return zero, err
	}
	b, err := readFrame(c)
	if err != nil {
		return zero, err
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	body := b[4:]
	if resp.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		return zero, err
	}
	return resp.(R), nil
}

// plainAuth authenticates c with SaslHandshake v1 and SaslAuthenticate v1
// (PLAIN) and returns the SaslAuthenticate answer.
func plainAuth(t *testing.T, c net.Conn, user, pass string) *kmsg.SASLAuthenticateResponse {
	t.Helper()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.SetVersion(1)
	hs.Mechanism = MechPlain
	hr, err := rawCall[*kmsg.SASLHandshakeResponse](c, hs, 1)
	if err != nil || hr.ErrorCode != 0 {
		t.Fatalf("SaslHandshake: %v %+v", err, hr)
	}
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.SetVersion(1)
	au.SASLAuthBytes = []byte("\x00" + user + "\x00" + pass)
	ar, err := rawCall[*kmsg.SASLAuthenticateResponse](c, au, 2)
	if err != nil {
		t.Fatalf("SaslAuthenticate: %v", err)
	}
	return ar
}

func metadataV4() *kmsg.MetadataRequest {
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(4)
	return md
}

// TestSASLReauthentication: with broker.sasl.session_lifetime clients are
// told the lifetime (KIP-368); franz-go re-authenticates on its own
// connections and keeps producing; a client that does not is
// disconnected at its next request; re-authenticating as someone else
// fails.
func TestSASLReauthentication(t *testing.T) {
	e := startSecureBroker(t, func(_ string, cfg *Config) { cfg.SASL.SessionLifetime = time.Second })

	cl := e.franz(t, scram512("admin", adminPassword), kgo.DefaultProduceTopic("reauth.test"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	handshakes := func() uint64 { return e.counters.requests[kmsg.SASLHandshake.Int16()].Load() }
	deadline := time.Now().Add(3500 * time.Millisecond)
	var first uint64
	for i := 0; time.Now().Before(deadline); i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("r")}).FirstErr(); err != nil {
			t.Fatalf("produce %d across re-authentications: %v", i, err)
		}
		if i == 0 {
			first = handshakes()
		}
		time.Sleep(250 * time.Millisecond)
	}
	if n := handshakes(); n < first+2 {
		t.Fatalf("SaslHandshake count went from %d to %d in 3.5s of 1s sessions: franz-go did not re-authenticate", first, n)
	}
	if strings.Contains(e.logs.String(), "expired") {
		t.Fatalf("a re-authenticating client was disconnected:\n%s", e.logs.String())
	}

	// Told the lifetime, then silent past it: the next request closes the
	// connection.
	c := e.dialTLS(t)
	if ar := plainAuth(t, c, "reader", readerPassword); ar.ErrorCode != 0 || ar.SessionLifetimeMillis != 1000 {
		t.Fatalf("SaslAuthenticate: %+v", ar)
	}
	if _, err := rawCall[*kmsg.MetadataResponse](c, metadataV4(), 3); err != nil {
		t.Fatalf("metadata within the session: %v", err)
	}
	time.Sleep(1200 * time.Millisecond)
	if _, err := rawCall[*kmsg.MetadataResponse](c, metadataV4(), 4); err == nil {
		t.Fatal("metadata after the session expired was answered")
	}
	waitFor(t, 5*time.Second, "the expiry in the log", func() bool { return strings.Contains(e.logs.String(), "expired") })

	// Re-authentication on the same connection: as the same user it
	// works, as another it fails and ends the connection.
	c = e.dialTLS(t)
	if ar := plainAuth(t, c, "reader", readerPassword); ar.ErrorCode != 0 {
		t.Fatalf("first authentication: %+v", ar)
	}
	if ar := plainAuth(t, c, "reader", readerPassword); ar.ErrorCode != 0 {
		t.Fatalf("re-authentication as the same user: %+v", ar)
	}
	if ar := plainAuth(t, c, "admin", adminPassword); ar.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Fatalf("re-authentication as another user: %+v", ar)
	}
	if _, err := readFrame(c); !errors.Is(err, io.EOF) {
		t.Fatalf("connection not closed after a failed re-authentication: %v", err)
	}
}

// TestSASLHandshakeV0 runs the raw exchange of SaslHandshake v0 (tokens as
// bare frames), and checks that an unauthenticated request closes the
// connection.
func TestSASLHandshakeV0(t *testing.T) {
	e := startSecureBroker(t, nil)
	raw := func(c net.Conn, token string) ([]byte, error) {
		frame := append([]byte{0, 0, 0, byte(len(token))}, token...)
		if _, err := c.Write(frame); err != nil {
			return nil, err
		}
		return readFrame(c)
	}
	handshakeV0 := func(c net.Conn) {
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.SetVersion(0)
		hs.Mechanism = MechPlain
		if hr, err := rawCall[*kmsg.SASLHandshakeResponse](c, hs, 1); err != nil || hr.ErrorCode != 0 {
			t.Fatalf("SaslHandshake v0: %v %+v", err, hr)
		}
	}

	c := e.dialTLS(t)
	handshakeV0(c)
	if reply, err := raw(c, "\x00reader\x00"+readerPassword); err != nil || len(reply) != 0 {
		t.Fatalf("raw PLAIN token: %q %v", reply, err)
	}
	md, err := rawCall[*kmsg.MetadataResponse](c, metadataV4(), 2)
	if err != nil || len(md.Topics) != 1 || *md.Topics[0].Topic != auditTopic {
		t.Fatalf("metadata after v0 authentication: %v %+v", err, md)
	}

	c = e.dialTLS(t)
	handshakeV0(c)
	if _, err := raw(c, "\x00reader\x00wrong"); err == nil {
		t.Fatal("a wrong raw PLAIN token was answered")
	}

	c = e.dialTLS(t)
	if _, err := rawCall[*kmsg.MetadataResponse](c, metadataV4(), 1); err == nil {
		t.Fatal("metadata before authentication was answered")
	}
	// An unauthenticated client cannot make the broker hold a large frame.
	c = e.dialTLS(t)
	c.Write([]byte{0, 0x10, 0, 0}) // announces 1 MiB
	if _, err := readFrame(c); err == nil {
		t.Fatal("a 1 MiB frame before authentication was not refused")
	}
	waitFor(t, 5*time.Second, "the refusal of the large frame", func() bool {
		return strings.Contains(e.logs.String(), "before SASL authentication)")
	})
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.SetVersion(1)
	c = e.dialTLS(t)
	if ar, err := rawCall[*kmsg.SASLAuthenticateResponse](c, au, 1); err != nil || ar.ErrorCode != kerr.IllegalSaslState.Code {
		t.Fatalf("SaslAuthenticate without handshake: %v %+v", err, ar)
	}
}

// TestClientCertificates: with tls.client_ca and no SASL, a certificate's
// common name is the principal; no certificate, no connection.
func TestClientCertificates(t *testing.T) {
	e := startSecureBroker(t, func(dir string, cfg *Config) {
		cfg.TLS.ClientCA = filepath.Join(dir, "ca.pem")
		cfg.SASL = SASLConfig{}
	})
	withCert := func(name string) kgo.Opt {
		cert, err := tls.LoadX509KeyPair(filepath.Join(e.pki, name+".pem"), filepath.Join(e.pki, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		c := e.tlsConfig()
		c.Certificates = []tls.Certificate{cert}
		return kgo.DialTLSConfig(c)
	}
	cl := e.franz(t, withCert("certreader"), kgo.ConsumeTopics(auditTopic), kgo.ConsumerGroup("cert-audit"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if recs := consumeN(t, cl, auditRecords, 30*time.Second); len(recs) != auditRecords {
		t.Fatalf("certreader consumed %d", len(recs))
	}
	other := e.franz(t, withCert("certreader"))
	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "not-cert-group"
	if r, err := request[*kmsg.FindCoordinatorResponse](t, other, fc); err != nil || r.ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("certreader's FindCoordinator of a group it may not use: %v %+v", err, r)
	}
	stranger := e.franz(t, withCert("stranger"))
	one := metadataV4()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(auditTopic)
	one.Topics = append(one.Topics, rt)
	if md, err := request[*kmsg.MetadataResponse](t, stranger, one); err != nil || md.Topics[0].ErrorCode != kerr.TopicAuthorizationFailed.Code {
		t.Fatalf("stranger's metadata: %v %+v", err, md)
	}
	noCert := e.franz(t)
	if _, err := request[*kmsg.MetadataResponse](t, noCert, kmsg.NewPtrMetadataRequest()); err == nil {
		t.Fatal("a client without a certificate was served")
	}
}

// TestDescribeACLs: the admin (describe on the cluster) sees the ACLs that
// apply; the reader is refused as Kafka refuses it.
func TestDescribeACLs(t *testing.T) {
	e := startSecureBroker(t, nil)
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType, req.ResourcePatternType = kmsg.ACLResourceTypeTopic, kmsg.ACLResourcePatternTypeMatch
	req.ResourceName = kmsg.StringPtr(auditTopic)
	req.Operation, req.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	admin := e.franz(t, scram512("admin", adminPassword))
	resp, err := request[*kmsg.DescribeACLsResponse](t, admin, req)
	if err != nil || resp.ErrorCode != 0 {
		t.Fatalf("admin DescribeAcls: %v %+v", err, resp)
	}
	var got []string
	for _, r := range resp.Resources {
		for _, a := range r.ACLs {
			got = append(got, r.ResourceName+"/"+r.ResourcePatternType.String()+"/"+a.Principal+"/"+a.Operation.String())
		}
	}
	want := "sluice.genlog/LITERAL/User:reader/READ sluice.genlog/LITERAL/User:reader/DESCRIBE sluice./PREFIXED/User:certreader/READ */LITERAL/User:admin/ALL"
	if strings.Join(got, " ") != want {
		t.Fatalf("ACLs applying to %s:\n got %s\nwant %s", auditTopic, strings.Join(got, " "), want)
	}
	reader := e.franz(t, scram512("reader", readerPassword))
	if resp, err := request[*kmsg.DescribeACLsResponse](t, reader, req); err != nil || resp.ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("reader DescribeAcls: %v %+v", err, resp)
	}
}

// TestProtectedTopicRetention: retention still expires an audit topic's
// old segments, never sooner than audit_min_retention.
func TestProtectedTopicRetention(t *testing.T) {
	tb := startBroker(t, Config{Partitions: 1, SegmentBytes: 2048, Retention: time.Hour, AuditMinRetention: 3 * time.Hour,
		ProtectedTopics: []string{auditTopic}}, "")
	recs := sampleBatch(t, 10)[batchHeaderLen:]
	now := time.Now()
	for i := 0; i < 40; i++ {
		age := 4 * time.Hour // beyond audit_min_retention: expires
		if i >= 20 {
			age = 2 * time.Hour // beyond broker.retention only: kept
		}
		if _, _, err := tb.Append(auditTopic, 0, buildBatch(10, recs, now.Add(-age).UnixMilli(), -1, -1, -1)); err != nil {
			t.Fatal(err)
		}
	}
	tb.runMaintenance(context.Background(), now)
	st := tb.partition(auditTopic, 0).stats()
	if st.LogStartOffset == 0 || st.LogStartOffset > 200 {
		t.Fatalf("log start %d: want the 4h-old segments gone and the 2h-old ones (from offset 200) kept", st.LogStartOffset)
	}
}

// TestSilentClientsAreClosed: a client that opens the TLS port and says
// nothing, and one that completes TLS but never authenticates, are closed
// within their timeouts and logged; neither holds its slot.
func TestSilentClientsAreClosed(t *testing.T) {
	defer func(h, a time.Duration) { tlsHandshakeTimeout, authTimeout = h, a }(tlsHandshakeTimeout, authTimeout)
	tlsHandshakeTimeout, authTimeout = 300*time.Millisecond, 500*time.Millisecond
	e := startSecureBroker(t, nil)

	silent, err := net.DialTimeout("tcp", e.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c := e.dialTLS(t)
	start := time.Now()
	for _, conn := range []net.Conn{silent, c} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("a silent connection was not closed: %v", err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("silent connections closed after %s", d)
	}
	waitFor(t, 5*time.Second, "both closures in the log", func() bool {
		l := e.logs.String()
		return strings.Contains(l, "TLS handshake failed") && strings.Contains(l, "no SASL authentication within")
	})
	waitFor(t, 5*time.Second, "the slots to be free", func() bool { return e.connCount() == 0 })
}
