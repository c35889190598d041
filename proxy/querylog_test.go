package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluice-proxy/sluice/audit"
	"github.com/sluice-proxy/sluice/internal/digest"
	"github.com/sluice-proxy/sluice/proxy"
	"github.com/sluice-proxy/sluice/router"
)

// The record of a COM_STMT_CLOSE names the statement it closes: its text,
// fingerprint and digest, as its prepare and executes have them. The close
// is no execution in the digest table.
func TestStmtCloseRecordNamesStatement(t *testing.T) {
	s := startRouted(t, router.Config{Type: "readwritesplit", MaxReplicationLag: 10 * time.Second}, proxy.Config{})
	sink := &recordSink{}
	s.srv.SetGenlog(audit.NewGenlog(audit.Config{Topic: "t", Proxy: "test", MaxQueryBytes: 1024}, sink))
	digests := digest.New(100)
	s.srv.SetDigests(digests)
	db := s.open(t, "app", "apppass", "app")
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const query = "SELECT ? + 41 AS closed_probe"
	st, err := conn.PrepareContext(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := st.QueryRowContext(ctx, 1).Scan(&n); err != nil || n != 42 {
		t.Fatalf("execute: %d, %v", n, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// COM_STMT_CLOSE has no answer: a ping after it sees it processed.
	if err := conn.PingContext(ctx); err != nil {
		t.Fatal(err)
	}

	byCommand := map[string]gjson.Result{}
	sink.mu.Lock()
	for _, rec := range sink.recs {
		g := gjson.Parse(rec)
		byCommand[g.Get("command").String()] = g
	}
	sink.mu.Unlock()
	exec, closed := byCommand["COM_STMT_EXECUTE"], byCommand["COM_STMT_CLOSE"]
	if !closed.Exists() || closed.Get("query").String() != query || closed.Get("fingerprint").String() == "" ||
		closed.Get("fingerprint").String() != exec.Get("fingerprint").String() ||
		closed.Get("digest").String() == "0" || closed.Get("digest").String() != exec.Get("digest").String() {
		t.Fatalf("close record %s\nexecute record %s", closed.Raw, exec.Raw)
	}
	counted := false
	for _, d := range digests.Top(100, "") {
		if d.DigestHex == exec.Get("digest").String() {
			counted = true
			if d.Count != 2 {
				t.Fatalf("digest %s counted %d times, want 2 (prepare and execute, not the close)", d.Fingerprint, d.Count)
			}
		}
	}
	if !counted {
		t.Fatalf("digest %s not in the table", exec.Get("digest"))
	}
}
