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

// GET /v1/audit/checkpoint answers the latest checkpoints as JSON, behind
// the token like the rest of the API, and 404 without signed checkpoints.
func TestAuditCheckpointEndpoint(t *testing.T) {
	get := func(api API, token string) (int, string) {
		req := httptest.NewRequest("GET", "/v1/audit/checkpoint", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		Handler(api).ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	creds, err := (&Config{Token: "s3cret"}).Credentials()
	if err != nil {
		t.Fatal(err)
	}
	api := API{Credentials: func() *Credentials { return creds }, AuditCheckpoints: func() any {
		return []map[string]any{{"proxy": "p1", "partition": 2, "count": 7}}
	}}
	if code, _ := get(api, ""); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", code)
	}
	if code, body := get(api, "s3cret"); code != http.StatusOK || !strings.Contains(body, `"count": 7`) {
		t.Fatalf("with the token: %d %s", code, body)
	}
	api.AuditCheckpoints = nil
	if code, body := get(api, "s3cret"); code != http.StatusNotFound || !strings.Contains(body, "signing_key") {
		t.Fatalf("without signing: %d %s", code, body)
	}
}
