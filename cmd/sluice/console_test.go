package main_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// chromium finds Debian's chromium (or another build's name for it). Under
// CI=true a missing browser fails the test; elsewhere it skips.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is required on CI (scripts/install-deps.sh installs it)")
	}
	t.Skip("chromium not installed")
	return ""
}

// adminGet fetches an admin API path with the bearer token.
func adminGet(t *testing.T, in *instance, token, path string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+in.admin+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// TestWebConsole loads the console in headless Chromium against a running
// Sluice with an admin token, and checks that the servers, the live query
// rate, the top digests and the audit tail appear; the screenshot is kept
// in $SLUICE_ARTIFACTS (or the test's temporary directory).
func TestWebConsole(t *testing.T) {
	browser := chromium(t)
	const token = "console-tok-31c7"
	in := startInstance(t, "admin_token: "+token+"\ngenlog:\n  enabled: true\n  topic: console.test\n")

	// The page and its assets need no token (they hold no data); the API does.
	for path, want := range map[string]string{"/": "text/html", "/console/app.js": "text/javascript", "/console/style.css": "text/css"} {
		resp, body := adminGet(t, in, "", path)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), want) || len(body) == 0 {
			t.Fatalf("GET %s without a token: %d %q, want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
	}
	for _, path := range []string{"/console/", "/console/nothing.js", "/nothing"} {
		if resp, _ := adminGet(t, in, token, path); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	if resp, _ := adminGet(t, in, "", "/v1/servers"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v1/servers without a token: %d, want 401", resp.StatusCode)
	}

	db, err := sql.Open("mysql", in.dsn("app", "apppass", "app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(2)
	probe := func(i int) error {
		var n int
		return db.QueryRow("SELECT " + strconv.Itoa(i) + " AS console_probe").Scan(&n)
	}
	for i := range 20 {
		if err := probe(i); err != nil {
			t.Fatal(err)
		}
	}
	// The fingerprint the page must list, as the API reports it.
	var fingerprint string
	{
		_, body := adminGet(t, in, token, "/v1/digests?limit=50&sort=total")
		var digests []struct{ Fingerprint string }
		if err := json.Unmarshal(body, &digests); err != nil {
			t.Fatalf("digests: %v: %s", err, body)
		}
		for _, d := range digests {
			if strings.Contains(d.Fingerprint, "console_probe") {
				fingerprint = d.Fingerprint
			}
		}
		if fingerprint == "" {
			t.Fatalf("no digest for the probe query: %s", body)
		}
	}
	// The probes reach the audit topic before the page looks for them.
	waitAuditTail(t, in, token, `query~"console_probe"`)

	// Steady traffic while the page is open, for a live rate above zero.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			probe(i)
			time.Sleep(10 * time.Millisecond)
		}
	})
	defer func() { stop(); wg.Wait() }()

	dir := os.Getenv("SLUICE_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "console.png")
	// The token travels in the fragment, never sent to the server; the
	// fragment's where presets the tail's filter box.
	page := "http://" + in.admin + "/#token=" + token + "&where=" + url.QueryEscape(`type=="query" && query~"console_probe"`)

	dom := loadConsole(t, browser, page, shot, func(dom string) []string { return consoleMissing(dom, fingerprint) })
	if err := os.WriteFile(filepath.Join(dir, "console.html"), []byte(dom), 0o644); err != nil {
		t.Fatal(err)
	}
	// The tail holds only what the fragment's filter matches: no logins.
	for _, li := range regexp.MustCompile(`(?s)<li class="rec[^"]*".*?</li>`).FindAllString(section(dom, `<ol id="tail"`, "</ol>"), -1) {
		if !strings.HasPrefix(li, `<li class="rec type-query`) || !strings.Contains(li, "console_probe") {
			t.Fatalf("a tail line that the filter should have left out: %s", li)
		}
	}

	// A filter that does not compile is reported by the tail, not applied.
	loadConsole(t, browser, "http://"+in.admin+"/#token="+token+"&where="+url.QueryEscape(`user=="app" &&`), filepath.Join(t.TempDir(), "bad-where.png"),
		func(dom string) []string {
			if !strings.Contains(section(dom, `id="tail-status"`, "</span>"), "--where") {
				return []string{"the where error in #tail-status"}
			}
			if strings.Contains(section(dom, `<ol id="tail"`, "</ol>"), "<li") {
				return []string{"an empty tail"}
			}
			return nil
		})

	// Without the token the page asks for it and shows no data.
	loadConsole(t, browser, "http://"+in.admin+"/", filepath.Join(t.TempDir(), "no-token.png"), func(dom string) []string {
		if !strings.Contains(dom, `<form id="auth">`) || strings.Contains(dom, `data-server=`) {
			return []string{"the token form and no data"}
		}
		return nil
	})

	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", shot, err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Fatalf("screenshot is %v, want 1280x900", b)
	}
	t.Logf("screenshot: %s", shot)
}

// waitAuditTail reads GET /v1/audit/tail until a record matching where
// arrives.
func waitAuditTail(t *testing.T, in *instance, token, where string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+in.admin+"/v1/audit/tail?since=5m&where="+url.QueryEscape(where), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("audit tail: %d %s", resp.StatusCode, body)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: {") {
			return
		}
	}
	t.Fatalf("no audit record matching %s within 60s: %v", where, sc.Err())
}

// loadConsole loads page until missing(DOM) is empty and returns the DOM.
// The page's timers run in virtual time, the audit stream in real time: a
// load may end before everything has arrived, so it is loaded again, within
// a deadline.
func loadConsole(t *testing.T, browser, page, shot string, missing func(dom string) []string) string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for attempt := 1; ; attempt++ {
		dom := dumpConsole(t, browser, page, shot)
		lacks := missing(dom)
		if len(lacks) == 0 {
			t.Logf("%s complete on load %d", page, attempt)
			return dom
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d loads %s still lacks %s:\n%s", attempt, page, strings.Join(lacks, "; "), dom)
		}
		t.Logf("load %d of %s lacks %s; again", attempt, page, strings.Join(lacks, "; "))
	}
}

// dumpConsole loads page in headless Chromium, lets its timers run 8 s of
// virtual time, and returns the DOM; the screenshot goes to shot.
func dumpConsole(t *testing.T, browser, page, shot string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	os.Remove(shot)
	// As root Chromium needs --no-sandbox; its own profile keeps runs apart.
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir="+t.TempDir(), "--window-size=1280,900", "--virtual-time-budget=8000",
		"--screenshot="+shot, "--dump-dom", page)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The Debian launcher is a shell script: end Chromium with it.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, tailOf(stderr.String(), 3000))
	}
	return stdout.String()
}

// consoleMissing lists what the console's DOM lacks.
func consoleMissing(dom, fingerprint string) []string {
	var missing []string
	servers := section(dom, `<table id="servers"`, "</table>")
	for _, s := range topo.Servers() {
		if !strings.Contains(servers, fmt.Sprintf(`data-server="%s"`, s.Name)) {
			missing = append(missing, "server "+s.Name)
		}
	}
	if !strings.Contains(servers, `class="badge role-primary">primary<`) {
		missing = append(missing, "the primary's role")
	}
	qps := regexp.MustCompile(`<span[^>]*id="qps"[^>]*>`).FindString(dom)
	if m := regexp.MustCompile(`data-qps="([0-9.]+)"`).FindStringSubmatch(qps); m == nil {
		missing = append(missing, "a qps figure")
	} else if v, _ := strconv.ParseFloat(m[1], 64); v <= 0 {
		missing = append(missing, "a qps above zero (got "+m[1]+")")
	}
	if m := regexp.MustCompile(`id="qps-line" points="([^"]*)"`).FindStringSubmatch(dom); m == nil || len(strings.Fields(m[1])) < 2 {
		missing = append(missing, "the qps sparkline")
	}
	if !regexp.MustCompile(`id="sessions-count">[0-9]+<`).MatchString(dom) {
		missing = append(missing, "the sessions count")
	}
	if !strings.Contains(section(dom, `<table id="digests"`, "</table>"), ">"+fingerprint+"<") {
		missing = append(missing, "digest "+fingerprint)
	}
	if !strings.Contains(section(dom, `<ol id="tail"`, "</ol>"), `<li class="rec type-query`) {
		missing = append(missing, "an audit tail line")
	}
	return missing
}

// section is the part of s from the first start to the next end.
func section(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s, end); j >= 0 {
		return s[:j]
	}
	return s
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
