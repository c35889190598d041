package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

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
	api := API{Token: "s3cret", AuditCheckpoints: func() any {
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
