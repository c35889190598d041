package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/audit"
)

// The audit tail compiles its where before it streams: an expression that
// does not compile is a 400 naming its position, never an empty stream.
func TestAuditTailWhere(t *testing.T) {
	records := []string{
		`{"type":"query","user":"app","query":"SELECT * FROM t WHERE a==1"}`,
		`{"type":"query","user":"bob","query":"SELECT 2"}`,
		`{"type":"auth","user":"carol","ok":false}`,
	}
	api := API{AuditTail: func(ctx context.Context, where *audit.Where, since time.Duration, emit func([]byte)) error {
		for _, r := range records {
			if where.Match([]byte(r)) {
				emit([]byte(r))
			}
		}
		return nil
	}}
	srv := httptest.NewServer(Handler(api))
	defer srv.Close()
	get := func(where string) (int, string) {
		resp, err := http.Get(srv.URL + "/v1/audit/tail?where=" + url.QueryEscape(where))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get(`query~"a==1" || user=="bob"`)
	if status != http.StatusOK || strings.Count(body, "data: ") != 2 || strings.Contains(body, "carol") {
		t.Fatalf("tail: %d %s", status, body)
	}
	status, body = get(`user=="app" &&`)
	var e struct{ Error string }
	if status != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil ||
		!strings.HasPrefix(e.Error, "--where: ") || !strings.Contains(e.Error, "(1:14)") {
		t.Fatalf("bad where: %d %s", status, body)
	}
}
