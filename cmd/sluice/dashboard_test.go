package main_test

import (
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// TestDashboardMetricsExist checks configs/grafana-dashboard.json against a
// running Sluice with Genlog and the bundled broker: every metric a panel
// queries is one /metrics exports, and /metrics passes Prometheus's own
// lint (promlint, what `promtool check metrics` runs).
func TestDashboardMetricsExist(t *testing.T) {
	in := startInstance(t, "genlog:\n  enabled: true\n")
	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{"SELECT 1", "CREATE TABLE IF NOT EXISTS dash_t (id INT PRIMARY KEY)", "REPLACE INTO dash_t VALUES (1)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var exposition string
	lab.WaitFor(t, "the monitor to report replica lag, and Genlog to send", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + in.admin + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		exposition = string(b)
		return strings.Contains(exposition, "\nsluice_server_replica_lag_seconds{") &&
			regexp.MustCompile(`\nsluice_producer_records_sent_total\{producer="genlog"\} [1-9]`).MatchString(exposition)
	})

	problems, err := promlint.New(strings.NewReader(exposition)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	raw, err := os.ReadFile("../../configs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("configs/grafana-dashboard.json: %v", err)
	}
	names := regexp.MustCompile(`\b(?:sluice|process|go)_[a-z0-9_]+\b`)
	queried := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, target := range p.Targets {
			for _, name := range names.FindAllString(target.Expr, -1) {
				queried++
				if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(exposition) {
					t.Errorf("panel %q queries %s, which /metrics does not export", p.Title, name)
				}
			}
		}
	}
	if queried < 20 {
		t.Fatalf("the dashboard queries %d metrics; is it the one in configs/?", queried)
	}
}
