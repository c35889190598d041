package replay

import (
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/audit"
)

// The filter given to the reader keeps the window's records and, before
// it, only those that may set a session's state.
func TestReadFilter(t *testing.T) {
	since := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	opts := ReadOptions{Since: since, Until: since.Add(time.Hour), Lookback: time.Hour}
	w, err := audit.ParseWhere(opts.filter())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rec  string
		want bool
	}{
		{`{"type":"query","ts":"2026-12-05T10:00:00.000001Z","command":"COM_QUERY","query":"SELECT 1"}`, true},
		{`{"type":"query","ts":"2026-12-05T11:00:00.000000Z","command":"COM_QUERY","query":"SELECT 1"}`, false},
		{`{"type":"quit","ts":"2026-12-05T10:30:00.000000Z"}`, true},
		{`{"type":"query","ts":"2026-12-05T09:59:00.000000Z","command":"COM_QUERY","query":"SELECT 1"}`, false},
		{`{"type":"query","ts":"2026-12-05T09:59:00.000000Z","command":"COM_QUERY","query":"  set names utf8mb4"}`, true},
		{`{"type":"query","ts":"2026-12-05T09:59:00.000000Z","command":"COM_QUERY","query":"SETTLE"}`, false},
		{`{"type":"query","ts":"2026-12-05T09:59:00.000000Z","command":"COM_STMT_PREPARE","query":"SELECT ?"}`, true},
		{`{"type":"connect","ts":"2026-12-05T09:30:00.000000Z"}`, true},
		{`{"type":"quit","ts":"2026-12-05T09:30:00.000000Z"}`, false},
		{`{"type":"auth","ts":"2026-12-05T10:30:00.000000Z"}`, false},
		{`{"type":"query","ts":"2026-12-05T08:59:00.000000Z","command":"COM_QUERY","query":"SET a=1"}`, false},
	} {
		if got := w.Match([]byte(tc.rec)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.rec, got, tc.want)
		}
	}
	if got := (&ReadOptions{}).filter(); got != `type in ["query", "connect", "quit"]` {
		t.Errorf("no window: %s", got)
	}
}
