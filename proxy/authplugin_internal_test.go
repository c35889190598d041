package proxy

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

func TestHandshakePlugin(t *testing.T) {
	for _, c := range []struct {
		accepted []string
		want     string
	}{
		{DefaultAuthPlugins, pluginNative},
		{[]string{pluginSHA2, pluginNative}, pluginSHA2},
		// client_ed25519 needs a 32-byte nonce: only a switch reaches it.
		{[]string{pluginEd25519, pluginSHA2}, pluginSHA2},
		{[]string{pluginEd25519}, pluginNative},
	} {
		if got := handshakePlugin(c.accepted); got != c.want {
			t.Errorf("handshakePlugin(%v) = %s, want %s", c.accepted, got, c.want)
		}
	}
}

func TestDecideAuth(t *testing.T) {
	all := DefaultAuthPlugins
	for _, c := range []struct {
		name string
		in   authInput
		want authDecision
	}{
		{"native account, native answer",
			authInput{AccountPlugin: pluginNative, ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: all},
			authDecision{Plugin: pluginNative}},
		{"native account, client answered caching_sha2: switch",
			authInput{AccountPlugin: pluginNative, ClientPlugin: pluginSHA2, PluginAuth: true, Offered: pluginNative, Accepted: all},
			authDecision{Plugin: pluginNative, Switch: true}},
		{"native account, caching_sha2 offered: switch",
			authInput{AccountPlugin: pluginNative, ClientPlugin: pluginSHA2, PluginAuth: true, Offered: pluginSHA2, Accepted: all},
			authDecision{Plugin: pluginNative, Switch: true}},
		{"old client without plugin auth, native account",
			authInput{AccountPlugin: "", Offered: pluginNative, Accepted: all},
			authDecision{Plugin: pluginNative}},
		{"native not accepted, nor caching_sha2",
			authInput{AccountPlugin: pluginNative, ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: []string{pluginEd25519}},
			authDecision{Refuse: refusePlugin}},
		{"unknown account plugin",
			authInput{AccountPlugin: "unix_socket", ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: all},
			authDecision{Refuse: refusePlugin}},
		{"ed25519, password held: switch to client_ed25519",
			authInput{AccountPlugin: accountEd25519, ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: all, HavePassword: true},
			authDecision{Plugin: pluginEd25519, Switch: true}},
		{"ed25519, password not held, TLS: learn it in clear",
			authInput{AccountPlugin: accountEd25519, ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: all, TLS: true},
			authDecision{Plugin: pluginClear, Switch: true, Learn: true}},
		{"ed25519, password not held, no TLS (RSA does not serve ed25519)",
			authInput{AccountPlugin: accountEd25519, ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: all, RSA: true},
			authDecision{Plugin: pluginEd25519, Refuse: refuseNeedsTLS}},
		{"ed25519 not accepted",
			authInput{AccountPlugin: accountEd25519, ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: []string{pluginNative}, TLS: true},
			authDecision{Refuse: refusePlugin}},
		{"caching_sha2, password held, client answered it: fast path",
			authInput{AccountPlugin: pluginSHA2, ClientPlugin: pluginSHA2, PluginAuth: true, Offered: pluginSHA2, Accepted: all, HavePassword: true},
			authDecision{Plugin: pluginSHA2}},
		{"caching_sha2, password held, native offered: switch",
			authInput{AccountPlugin: pluginSHA2, ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: all, HavePassword: true},
			authDecision{Plugin: pluginSHA2, Switch: true}},
		{"caching_sha2, password not held, TLS: full authentication",
			authInput{AccountPlugin: pluginSHA2, ClientPlugin: pluginSHA2, PluginAuth: true, Offered: pluginSHA2, Accepted: all, TLS: true},
			authDecision{Plugin: pluginSHA2, Learn: true}},
		{"caching_sha2, password not held, RSA keys: full authentication",
			authInput{AccountPlugin: pluginSHA2, ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: all, RSA: true},
			authDecision{Plugin: pluginSHA2, Switch: true, Learn: true}},
		{"caching_sha2, password not held, neither TLS nor RSA",
			authInput{AccountPlugin: pluginSHA2, ClientPlugin: pluginSHA2, PluginAuth: true, Offered: pluginSHA2, Accepted: all},
			authDecision{Plugin: pluginSHA2, Refuse: refuseNeedsTLS}},
		// auth.plugins without the account's own plugin: caching_sha2_password
		// serves any account, checking the password it sends in full.
		{"native account, only caching_sha2 accepted, TLS: full authentication",
			authInput{AccountPlugin: pluginNative, ClientPlugin: pluginSHA2, PluginAuth: true, Offered: pluginSHA2, Accepted: []string{pluginSHA2}, TLS: true},
			authDecision{Plugin: pluginSHA2, Learn: true}},
		{"native account, only caching_sha2 accepted, password held: fast path",
			authInput{AccountPlugin: pluginNative, ClientPlugin: pluginSHA2, PluginAuth: true, Offered: pluginSHA2, Accepted: []string{pluginSHA2}, HavePassword: true},
			authDecision{Plugin: pluginSHA2}},
		{"native account, only caching_sha2 accepted, no TLS, no RSA",
			authInput{AccountPlugin: pluginNative, ClientPlugin: pluginSHA2, PluginAuth: true, Offered: pluginSHA2, Accepted: []string{pluginSHA2}},
			authDecision{Plugin: pluginSHA2, Refuse: refuseNeedsTLS}},
		{"ed25519 account, client_ed25519 not accepted: caching_sha2",
			authInput{AccountPlugin: accountEd25519, ClientPlugin: pluginNative, PluginAuth: true, Offered: pluginNative, Accepted: []string{pluginNative, pluginSHA2}, RSA: true},
			authDecision{Plugin: pluginSHA2, Switch: true, Learn: true}},
		{"caching_sha2 account, client cannot switch",
			authInput{AccountPlugin: pluginSHA2, Offered: pluginNative, Accepted: all, HavePassword: true},
			authDecision{Plugin: pluginSHA2, Refuse: refusePlugin}},
	} {
		if got := decideAuth(c.in); got != c.want {
			t.Errorf("%s: decideAuth = %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestSHA2Path(t *testing.T) {
	for _, c := range []struct {
		empty, held, fastOK, tls, rsa bool
		want                          sha2Step
	}{
		{empty: true, want: sha2Empty},
		{empty: true, held: true, tls: true, want: sha2Empty},
		{held: true, fastOK: true, want: sha2Fast},
		{held: true, fastOK: true, tls: true, rsa: true, want: sha2Fast},
		// A fast answer that does not match: full authentication where it
		// is safe (the password may have changed), else a wrong password.
		{held: true, tls: true, want: sha2FullTLS},
		{held: true, rsa: true, want: sha2FullRSA},
		{held: true, want: sha2Deny},
		// Nothing held: full authentication, TLS preferred over RSA.
		{tls: true, rsa: true, want: sha2FullTLS},
		{rsa: true, want: sha2FullRSA},
		{want: sha2NeedsSecure},
	} {
		if got := sha2Path(c.empty, c.held, c.fastOK, c.tls, c.rsa); got != c.want {
			t.Errorf("sha2Path(%+v) = %d, want %d", c, got, c.want)
		}
	}
}

func TestBackendPlugin(t *testing.T) {
	for _, c := range []struct {
		server  string
		havePwd bool
		want    string
	}{
		{pluginNative, false, pluginNative},
		{pluginNative, true, pluginNative},
		// A MySQL 8 handshake offers caching_sha2: without the password
		// Sluice answers natively and a native account goes on.
		{pluginSHA2, false, pluginNative},
		{pluginSHA2, true, pluginSHA2},
		{pluginEd25519, true, pluginEd25519},
		{pluginEd25519, false, pluginNative},
		{"", false, pluginNative},
		{"auth_gssapi_client", true, pluginNative},
	} {
		if got := backendPlugin(c.server, c.havePwd); got != c.want {
			t.Errorf("backendPlugin(%q, %v) = %s, want %s", c.server, c.havePwd, got, c.want)
		}
	}
}

func TestBackendAuthData(t *testing.T) {
	scramble := bytes.Repeat([]byte{7}, 20)
	nonce := bytes.Repeat([]byte{9}, 32)
	pw := []byte("s3cret")
	withPwd := &Login{Password: pw}
	stage1Only := &Login{Stage1: bytes.Repeat([]byte{1}, 20)}
	if got, _ := backendAuthData(pluginSHA2, scramble, withPwd, false); !bytes.Equal(got, mysql.CalcCachingSha2Password(scramble, pw)) {
		t.Error("caching_sha2 answer differs from go-mysql's")
	}
	want, _ := mysql.CalcEd25519Password(nonce, string(pw))
	if got, _ := backendAuthData(pluginEd25519, nonce, withPwd, false); !bytes.Equal(got, want) {
		t.Error("client_ed25519 answer differs from go-mysql's")
	}
	if got, _ := backendAuthData(pluginNative, append(bytes.Clone(scramble), 0), withPwd, false); !bytes.Equal(got, mysql.CalcNativePassword(scramble, pw)) {
		t.Error("native answer from the password differs from go-mysql's")
	}
	for _, plugin := range []string{pluginSHA2, pluginEd25519, pluginClear} {
		if _, err := backendAuthData(plugin, nonce, stage1Only, true); err == nil || !strings.Contains(err.Error(), "needs the account's password") {
			t.Errorf("%s without the password: %v", plugin, err)
		}
	}
	if _, err := backendAuthData(pluginClear, nil, withPwd, false); err == nil {
		t.Error("mysql_clear_password without TLS was answered")
	}
	if _, err := backendAuthData("dialog", nil, withPwd, true); err == nil {
		t.Error("an unknown plugin was answered")
	}
}

func TestEd25519LikeMariaDB(t *testing.T) {
	pw := []byte("edpass")
	pub := ed25519PublicKey(pw)
	msg := bytes.Repeat([]byte{0x5a}, 32)
	sig := ed25519Sign(pw, msg)
	// A standard Ed25519 signature: crypto/ed25519 verifies it.
	if !ed25519.Verify(pub, msg, sig) {
		t.Fatal("signature does not verify with crypto/ed25519")
	}
	acct := &Account{Plugin: accountEd25519, Ed25519Key: pub}
	if !acct.verifyEd25519(msg, sig) || acct.verifyEd25519(msg, ed25519Sign([]byte("other"), msg)) {
		t.Fatal("verifyEd25519 is wrong")
	}
	if !acct.checkPassword(pw) || acct.checkPassword([]byte("edpas")) {
		t.Fatal("checkPassword for ed25519 is wrong")
	}
	key, err := ParseEd25519Key(base64.RawStdEncoding.EncodeToString(pub))
	if err != nil || !bytes.Equal(key, pub) {
		t.Fatalf("ParseEd25519Key: %v", err)
	}
	if _, err := ParseEd25519Key("*AB12"); err == nil {
		t.Fatal("a native hash parsed as an ed25519 key")
	}
}

// foobarSHA2 is MySQL 8's authentication_string for IDENTIFIED BY
// 'foobar' (caching_sha2_password), from a real server.
var foobarSHA2, _ = hex.DecodeString("24412430303524031A69251C34295C4B35167C7F1E5A7B63091349503974624D34504B5A424679354856336868686F52485A736E4A733368786E427575516C73446469496537")

func TestSHA2Hash(t *testing.T) {
	h, err := ParseSHA2Hash(string(foobarSHA2))
	if err != nil {
		t.Fatal(err)
	}
	acct := &Account{Plugin: pluginSHA2, SHA2Hash: h}
	if !acct.checkPassword([]byte("foobar")) {
		t.Fatal("the right password is refused")
	}
	for _, bad := range []string{"foobaR", "", "foobar "} {
		if acct.checkPassword([]byte(bad)) {
			t.Fatalf("%q accepted", bad)
		}
	}
	for _, bad := range []string{"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19", "$A$005$short", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF6H6.6bH5"} {
		if _, err := ParseSHA2Hash(bad); err == nil {
			t.Errorf("%q parsed as a caching_sha2 hash", bad)
		}
	}
	if (&Account{Plugin: pluginSHA2}).checkPassword([]byte("x")) || !(&Account{Plugin: pluginSHA2}).checkPassword(nil) {
		t.Fatal("an account without a password")
	}
}

func TestLearnedPasswords(t *testing.T) {
	accts := NewAccounts(nil, time.Second, nil)
	ed := Account{User: "u", Host: "%", Plugin: accountEd25519, Ed25519Key: ed25519PublicKey([]byte("pw"))}
	accts.SetConfigAccounts([]Account{ed})
	accts.learn(&ed, []byte("pw"))
	got := accts.password(&ed)
	if string(got) != "pw" {
		t.Fatalf("password = %q", got)
	}
	got[0] = 'X' // the caller's copy
	if string(accts.password(&ed)) != "pw" {
		t.Fatal("the caller's copy changed the cache")
	}
	// The account's key changes: the password is wiped.
	l := accts.learned[accountKey(&ed)]
	changed := ed
	changed.Ed25519Key = ed25519PublicKey([]byte("new"))
	accts.SetConfigAccounts([]Account{changed})
	if accts.LearnedPasswords() != 0 || !bytes.Equal(l.password, []byte{0, 0}) {
		t.Fatalf("after the account changed: %d learned, buffer %q", accts.LearnedPasswords(), l.password)
	}
	// Expired after auth.password_cache_ttl.
	accts.SetAuthConfig(AuthConfig{PasswordCacheTTL: time.Millisecond})
	accts.learn(&changed, []byte("new"))
	time.Sleep(5 * time.Millisecond)
	if accts.password(&changed) != nil || accts.LearnedPasswords() != 0 {
		t.Fatal("an expired password was kept")
	}
	// A config account's password is the config's, never learned.
	cfgAcct := NewConfigAccount("c", "%", "cpw")
	accts.learn(&cfgAcct, []byte("cpw"))
	if accts.LearnedPasswords() != 0 || string(accts.password(&cfgAcct)) != "cpw" {
		t.Fatal("config account")
	}
}

func TestAuthConfig(t *testing.T) {
	c := Config{Listen: "127.0.0.1:4006"}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Auth.Plugins, DefaultAuthPlugins) || c.Auth.PasswordCacheTTL != 8*time.Hour {
		t.Fatalf("defaults: %+v", c.Auth)
	}
	for _, tc := range []struct {
		auth AuthConfig
		want string
	}{
		{AuthConfig{Plugins: []string{pluginNative, "sha256_password"}}, "auth.plugins[1]: unknown plugin"},
		{AuthConfig{PasswordCacheTTL: -time.Second}, "auth.password_cache_ttl"},
		{AuthConfig{RSAPrivateKey: "/x.pem"}, "auth.rsa_private_key: set both"},
		{AuthConfig{RSAPrivateKey: "/nonexistent/private.pem", RSAPublicKey: "/nonexistent/public.pem"}, "auth.rsa_private_key: open /nonexistent/private.pem"},
	} {
		c := Config{Listen: "127.0.0.1:4006", Auth: tc.auth}.WithDefaults()
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want %q", tc.auth, err, tc.want)
		}
	}
}
