package faulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	gmysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/sluice-proxy/sluice/internal/testenv/lab"
)

// loginOutcome sends one handshake response built by build(scramble) and
// returns the outcome: nil for OK, *sqlErr for a refusal. An auth switch
// request is answered with switchReply(scramble from the request), when set.
func loginOutcome(t *testing.T, addr string, build func(scramble []byte) []byte, switchReply func(req []byte) []byte) error {
	t.Helper()
	r, err := dialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if err := r.write(build(r.scramble)); err != nil {
		return err
	}
	for i := 0; i < 3; i++ {
		sw, err := r.outcome()
		if err != nil || sw == nil {
			return err
		}
		if switchReply == nil {
			return fmt.Errorf("unexpected auth switch request %q", sw)
		}
		if err := r.write(switchReply(sw)); err != nil {
			return err
		}
	}
	return errors.New("auth switch requested three times")
}

// switchScramble is the scramble of an auth switch request:
// 0xfe, plugin name, NUL, scramble, NUL.
func switchScramble(req []byte) []byte {
	i := bytes.IndexByte(req[1:], 0)
	if i < 0 {
		return nil
	}
	return bytes.TrimSuffix(req[1+i+1:], []byte{0})
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	var se *sqlErr
	switch {
	case err == nil:
		t.Errorf("%s: logged in", what)
	case errors.As(err, &se) && se.code == gmysql.ER_ACCESS_DENIED_ERROR:
	case errors.As(err, &se):
		t.Errorf("%s: error %v; want 1045", what, se)
	default:
		// The connection was closed without an answer: refused too, but
		// a client deserves 1045.
		t.Errorf("%s: %v; want error 1045", what, err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestAuthCannotBeBypassed sends handshake responses no client library
// would, through the raw protocol: every one is refused with 1045, while
// the matching correct ones (the controls) log in.
func TestAuthCannotBeBypassed(t *testing.T) {
	s := startSluice(t, options{})
	const user, pass = lab.AppUser, lab.AppPassword
	native := gmysql.AUTH_NATIVE_PASSWORD
	resp := func(user string, auth func(scramble []byte) []byte, plugin string) func([]byte) []byte {
		return func(scramble []byte) []byte { return handshakeResponse(rawCaps, user, auth(scramble), "app", plugin) }
	}
	good := func(scramble []byte) []byte { return nativeReply(scramble, pass) }

	// Controls: the right answers log in.
	if err := loginOutcome(t, s.listen, resp(user, good, native), nil); err != nil {
		t.Fatalf("control: correct native login: %v", err)
	}
	if err := loginOutcome(t, s.listen, resp(lab.NopassUser, func([]byte) []byte { return nil }, native), nil); err != nil {
		t.Fatalf("control: empty password for the account without one: %v", err)
	}

	cases := []struct {
		name string
		auth func(scramble []byte) []byte
	}{
		{"empty reply for an account with a password", func([]byte) []byte { return nil }},
		{"19-byte reply", func(sc []byte) []byte { return good(sc)[:19] }},
		{"21-byte reply", func(sc []byte) []byte { return append(good(sc), 0) }},
		{"20 random bytes", func([]byte) []byte { return randomBytes(20) }},
		{"20 zero bytes", func([]byte) []byte { return make([]byte, 20) }},
		{"the password in clear", func([]byte) []byte { return []byte(pass) }},
		{"SHA1(password) (stage 1)", func([]byte) []byte { h := sha1.Sum([]byte(pass)); return h[:] }},
		{"SHA1(SHA1(password)) (the stored hash)", func([]byte) []byte {
			h := sha1.Sum([]byte(pass))
			h = sha1.Sum(h[:])
			return h[:]
		}},
		{"the reply to another scramble (replay)", func([]byte) []byte { return nativeReply(randomBytes(20), pass) }},
		{"255 bytes", func([]byte) []byte { return randomBytes(255) }},
	}
	for _, c := range cases {
		wantDenied(t, c.name, loginOutcome(t, s.listen, resp(user, c.auth, native), nil))
	}
	// The account without a password accepts nothing but the empty reply.
	wantDenied(t, "nopass with a 20-byte reply", loginOutcome(t, s.listen, resp(lab.NopassUser, func([]byte) []byte { return randomBytes(20) }, native), nil))
	// An unknown user, with any reply.
	wantDenied(t, "unknown user", loginOutcome(t, s.listen, resp("no_such_user", good, native), nil))
	wantDenied(t, "unknown user, empty reply", loginOutcome(t, s.listen, resp("no_such_user", func([]byte) []byte { return nil }, native), nil))

	// Auth switch tricks: the client claims another plugin; Sluice asks for
	// mysql_native_password on the same scramble.
	for _, plugin := range []string{"mysql_clear_password", "caching_sha2_password", "dialog", "client_ed25519", "no_such_plugin"} {
		claim := resp(user, func([]byte) []byte { return []byte(pass) }, plugin)
		// Control: a correct native answer to the switch logs in.
		if err := loginOutcome(t, s.listen, claim, func(req []byte) []byte { return nativeReply(switchScramble(req), pass) }); err != nil {
			t.Errorf("control: %s, then a correct answer to the switch: %v", plugin, err)
		}
		for name, answer := range map[string]func(req []byte) []byte{
			"the password in clear":     func([]byte) []byte { return append([]byte(pass), 0) },
			"an empty answer":           func([]byte) []byte { return nil },
			"garbage":                   func([]byte) []byte { return randomBytes(20) },
			"a 21-byte answer":          func(req []byte) []byte { return append(nativeReply(switchScramble(req), pass), 0) },
			"another plugin's name":     func([]byte) []byte { return []byte("mysql_clear_password\x00" + pass + "\x00") },
			"the first scramble's echo": func(req []byte) []byte { return switchScramble(req) },
		} {
			wantDenied(t, plugin+" then "+name, loginOutcome(t, s.listen, claim, func(req []byte) []byte { return answer(req) }))
		}
	}
	// No capability for plugin auth, no secure connection: the reply is
	// NUL-terminated; a wrong one is still refused.
	oldCaps := uint32(gmysql.CLIENT_PROTOCOL_41 | gmysql.CLIENT_LONG_PASSWORD)
	old := func(auth []byte) func([]byte) []byte {
		return func([]byte) []byte {
			b := handshakeResponse(oldCaps, user, nil, "", "")
			b = b[:len(b)-1] // drop the 1-byte length: this form is NUL-terminated
			return append(append(b, auth...), 0)
		}
	}
	wantDenied(t, "pre-4.1-auth form, empty reply", loginOutcome(t, s.listen, old(nil), nil))
	wantDenied(t, "pre-4.1-auth form, clear password", loginOutcome(t, s.listen, old([]byte(pass)), nil))

	// Failed attempts are counted.
	if got := s.metric("sluice_auth_failures_total"); got < float64(len(cases)) {
		t.Errorf("sluice_auth_failures_total %v after %d refused logins", got, len(cases))
	}
}

// TestChangeUserCannotBorrowAnotherAccount sends COM_CHANGE_USER to
// another account with a wrong password (and with tricks): it fails with
// 1045, and the connection is never left logged in as that account. A
// correct change (the control) works.
func TestChangeUserCannotBorrowAnotherAccount(t *testing.T) {
	s := startSluice(t, options{})
	native := gmysql.AUTH_NATIVE_PASSWORD
	login := func() *rawClient {
		r, err := dialRaw(s.listen)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.login(lab.AppUser, lab.AppPassword, "app"); err != nil {
			t.Fatalf("login as app: %v", err)
		}
		t.Cleanup(r.close)
		return r
	}
	currentUser := func(r *rawClient) (string, error) {
		rows, err := r.query("SELECT CURRENT_USER()")
		if err != nil {
			return "", err
		}
		if len(rows) != 1 || len(rows[0]) != 1 {
			return "", fmt.Errorf("CURRENT_USER(): %v", rows)
		}
		return rows[0][0], nil
	}

	// Control: the right password switches accounts.
	r := login()
	if _, err := r.changeUser(lab.SbtestUser, nativeReply(r.scramble, lab.SbtestPassword), "sbtest", native); err != nil {
		t.Fatalf("control: change user with the right password: %v", err)
	}
	if u, err := currentUser(r); err != nil || u != "sbtest@%" {
		t.Fatalf("control: after change user, CURRENT_USER() = %q, %v", u, err)
	}

	for _, c := range []struct {
		name   string
		user   string
		auth   func(scramble []byte) []byte
		plugin string
	}{
		{"wrong password", lab.SbtestUser, func(sc []byte) []byte { return nativeReply(sc, "wrong") }, native},
		{"empty reply", lab.SbtestUser, func([]byte) []byte { return nil }, native},
		{"the current account's reply", lab.SbtestUser, func(sc []byte) []byte { return nativeReply(sc, lab.AppPassword) }, native},
		{"19 bytes", lab.SbtestUser, func(sc []byte) []byte { return nativeReply(sc, lab.SbtestPassword)[:19] }, native},
		{"a reply to another scramble", lab.SbtestUser, func([]byte) []byte { return nativeReply(randomBytes(20), lab.SbtestPassword) }, native},
		{"clear password claiming another plugin", lab.SbtestUser, func([]byte) []byte { return []byte(lab.SbtestPassword) }, "mysql_clear_password"},
		{"account of another host", lab.OtherhostUser, func(sc []byte) []byte { return nativeReply(sc, "x") }, native},
		{"account without a password, with a reply", lab.NopassUser, func([]byte) []byte { return randomBytes(20) }, native},
	} {
		r := login()
		sw, err := r.changeUser(c.user, c.auth(r.scramble), "", c.plugin)
		if err == nil && sw != nil {
			// An auth switch request: answer it wrongly.
			if werr := r.write(append([]byte(lab.SbtestPassword), 0)); werr != nil {
				t.Fatal(werr)
			}
			sw, err = r.outcome()
		}
		wantDenied(t, "change user: "+c.name, err)
		// Whatever the connection can still do, it is not the other user.
		if u, qerr := currentUser(r); qerr == nil && u != "app@%" {
			t.Errorf("change user: %s: failed, but the session now runs as %q", c.name, u)
		}
	}
}

// TestHostPatternIsEnforced: an account exists only for hosts that do not
// match the client's address, so the right password is still refused; the
// account created during the test is picked up by the account reload
// (users_refresh_interval), proven by a sibling account that matches.
func TestHostPatternIsEnforced(t *testing.T) {
	s := startSluice(t, options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{
		"CREATE OR REPLACE USER 'hostonly'@'10.%' IDENTIFIED BY 'hostpw'",
		"GRANT SELECT ON app.* TO 'hostonly'@'10.%'",
		"CREATE OR REPLACE USER 'hostok'@'127.0.0.%' IDENTIFIED BY 'hostpw'",
		"GRANT SELECT ON app.* TO 'hostok'@'127.0.0.%'",
		"CREATE OR REPLACE USER 'hostmask'@'10.1.0.0/255.255.0.0' IDENTIFIED BY 'hostpw'",
	} {
		if err := topo.Primary.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		topo.Primary.Exec(ctx, "DROP USER IF EXISTS 'hostonly'@'10.%', 'hostok'@'127.0.0.%', 'hostmask'@'10.1.0.0/255.255.0.0'")
	})
	waitCaughtUp(t)
	login := func(user, pass string) error {
		r, err := dialRaw(s.listen)
		if err != nil {
			return err
		}
		defer r.close()
		return r.login(user, pass, "")
	}
	lab.WaitFor(t, "the new matching account to be loaded", 30*time.Second, func() bool { return login("hostok", "hostpw") == nil })
	wantDenied(t, "'hostonly'@'10.%' from 127.0.0.1", login("hostonly", "hostpw"))
	wantDenied(t, "'hostmask'@'10.1.0.0/255.255.0.0' from 127.0.0.1", login("hostmask", "hostpw"))
	wantDenied(t, "'otherhost'@'10.9.9.9' from 127.0.0.1", login(lab.OtherhostUser, "x"))
	// Control: 'local'@'127.0.0.1' matches.
	if err := login(lab.LocalUser, lab.LocalPassword); err != nil {
		t.Fatalf("control: 'local'@'127.0.0.1': %v", err)
	}
}

// TestAdminAPIRequiresToken: with admin_token set, every admin endpoint
// but /health refuses requests without the token (or with a wrong one).
func TestAdminAPIRequiresToken(t *testing.T) {
	cfgSrc, _ := os.ReadFile(filepath.Join("..", "..", "..", "configs", "sluice.yaml"))
	if !bytes.Contains(cfgSrc, []byte("\nadmin_token:")) {
		t.Skip("Sluice has no admin_token setting yet (configs/sluice.yaml): nothing to enforce")
	}
	const token = "t0ken-for-faulttest"
	s := startSluice(t, options{extra: "admin_token: " + token + "\n"})
	get := func(method, path, auth string) int {
		req, err := http.NewRequest(method, "http://"+s.admin+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("GET", "/health", ""); code != http.StatusOK {
		t.Errorf("/health without a token: %d; it must stay open for probes", code)
	}
	for _, ep := range []struct{ method, path string }{
		{"GET", "/metrics"}, {"GET", "/v1/servers"}, {"POST", "/v1/switchover?to=replica1"},
		{"GET", "/debug/pprof/"}, {"GET", "/v1/no-such-endpoint"},
	} {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", token, "Basic " + token} {
			if code := get(ep.method, ep.path, auth); code != http.StatusUnauthorized {
				t.Errorf("%s %s with Authorization %q: %d; want 401", ep.method, ep.path, auth, code)
			}
		}
	}
	// Control: the token opens them.
	if code := get("GET", "/v1/servers", "Bearer "+token); code != http.StatusOK {
		t.Errorf("GET /v1/servers with the token: %d", code)
	}
	if code := get("GET", "/metrics", "Bearer "+token); code != http.StatusOK {
		t.Errorf("GET /metrics with the token: %d", code)
	}
}
