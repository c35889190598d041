package proxy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha1"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"filippo.io/edwards25519"
	"github.com/go-mysql-org/go-mysql/mysql"
	tidbauth "github.com/pingcap/tidb/pkg/parser/auth"
)

// The authentication plugins, by the names the protocol carries. An
// account names its server-side plugin in mysql.user (ed25519 for MariaDB's);
// the client runs the client-side one (client_ed25519).
const (
	pluginNative  = mysql.AUTH_NATIVE_PASSWORD       // mysql_native_password
	pluginSHA2    = mysql.AUTH_CACHING_SHA2_PASSWORD // caching_sha2_password
	pluginEd25519 = mysql.AUTH_MARIADB_ED25519       // client_ed25519
	pluginClear   = mysql.AUTH_CLEAR_PASSWORD        // mysql_clear_password
	// accountEd25519 is what mysql.user names MariaDB's ed25519 accounts.
	accountEd25519 = "ed25519"
)

// DefaultAuthPlugins is auth.plugins when the config lists none.
var DefaultAuthPlugins = []string{pluginNative, pluginSHA2, pluginEd25519}

// knownAuthPlugins are the plugins auth.plugins may list.
var knownAuthPlugins = []string{pluginNative, pluginSHA2, pluginEd25519}

// clientPluginFor is the client-side plugin an account's server-side
// plugin runs with; "" for a plugin Sluice does not speak.
func clientPluginFor(accountPlugin string) string {
	switch accountPlugin {
	case "", pluginNative:
		return pluginNative
	case pluginSHA2:
		return pluginSHA2
	case accountEd25519, pluginEd25519:
		return pluginEd25519
	}
	return ""
}

// handshakePlugin is the plugin the handshake offers its scramble for: the
// first of the accepted plugins a 20-byte scramble serves. client_ed25519
// needs a 32-byte nonce, which no handshake carries (clients read 20
// bytes), so MariaDB too reaches it only by an AuthSwitchRequest.
func handshakePlugin(accepted []string) string {
	for _, p := range accepted {
		if p == pluginNative || p == pluginSHA2 {
			return p
		}
	}
	return pluginNative
}

// authRefusal is why a login is refused before any credential is checked.
type authRefusal int

const (
	refuseNone authRefusal = iota
	// refusePlugin: the account's plugin is not in auth.plugins, or is
	// one Sluice does not speak, or the client cannot switch to it.
	refusePlugin
	// refuseNeedsTLS: Sluice needs the account's password to log in to
	// the servers and the client will not send it where it is safe.
	refuseNeedsTLS
)

// authInput is what decideAuth decides from.
type authInput struct {
	// AccountPlugin is the account's plugin as mysql.user names it.
	AccountPlugin string
	// ClientPlugin is the plugin the client answered the handshake with;
	// PluginAuth whether it can switch (CLIENT_PLUGIN_AUTH).
	ClientPlugin string
	PluginAuth   bool
	// Offered is the handshake's plugin; Accepted is auth.plugins.
	Offered  string
	Accepted []string
	// TLS: the client connection is encrypted. RSA: auth.rsa_* keys exist.
	TLS, RSA bool
	// HavePassword: Sluice holds the account's password (from the config,
	// or learned and still cached).
	HavePassword bool
}

// authDecision is how a client authenticates.
type authDecision struct {
	// Plugin is the client-side plugin the client authenticates with.
	Plugin string
	// Switch: the handshake's answer does not serve, an AuthSwitchRequest
	// moves the client to Plugin.
	Switch bool
	// Learn: Plugin makes the client send its password, which Sluice keeps
	// to log in to the servers.
	Learn  bool
	Refuse authRefusal
}

// decideAuth chooses the plugin a client authenticates with, as a server
// does: the account's own plugin, if auth.plugins accepts it, else
// caching_sha2_password if that is accepted. An account
// whose servers need its password (anything but native) and whose password
// Sluice does not hold yet must send it: caching_sha2_password's full
// authentication does (over TLS, or RSA-encrypted when keys are
// configured); for client_ed25519, which never sends it, Sluice asks over
// TLS for mysql_clear_password instead.
func decideAuth(in authInput) authDecision {
	want := clientPluginFor(in.AccountPlugin)
	if want == "" {
		return authDecision{Refuse: refusePlugin}
	}
	if !slices.Contains(in.Accepted, want) {
		// caching_sha2_password serves any account Sluice knows: its full
		// authentication sends the password, which every stored
		// credential checks (native hash, ed25519 key, $A$005$ hash).
		if !slices.Contains(in.Accepted, pluginSHA2) {
			return authDecision{Refuse: refusePlugin}
		}
		want = pluginSHA2
	}
	d := authDecision{Plugin: want}
	if want != pluginNative && !in.HavePassword {
		// Sluice needs the password: for the servers, or (a native
		// account over caching_sha2) to check it at all.
		switch {
		case want == pluginSHA2 && (in.TLS || in.RSA):
			d.Learn = true
		case in.TLS:
			d.Plugin, d.Learn = pluginClear, true
		default:
			return authDecision{Plugin: want, Refuse: refuseNeedsTLS}
		}
	}
	client := in.ClientPlugin
	if !in.PluginAuth || client == "" {
		client = pluginNative
	}
	if !in.PluginAuth && d.Plugin != pluginNative {
		return authDecision{Plugin: d.Plugin, Refuse: refusePlugin}
	}
	// Only the handshake's plugin had its scramble; another answer is for
	// data the client did not get.
	d.Switch = client != d.Plugin || in.Offered != d.Plugin
	return d
}

// backendPlugin is the plugin Sluice answers a server's handshake with:
// the server's if Sluice can (it needs the password for all but native),
// else native with SHA1(password), and the server switches if the account
// needs another.
func backendPlugin(serverPlugin string, havePassword bool) string {
	switch serverPlugin {
	case pluginSHA2, pluginEd25519:
		if havePassword {
			return serverPlugin
		}
	}
	return pluginNative
}

// errNeedPassword is a backend login that needs the password Sluice does
// not hold.
var errNeedPassword = errors.New("the server asks for a plugin that needs the account's password")

// backendAuthData is Sluice's answer to a server's request for plugin
// with data (its scramble or nonce). tls tells whether the connection is
// encrypted (mysql_clear_password is sent only then).
func backendAuthData(plugin string, data []byte, login *Login, tls bool) ([]byte, error) {
	switch plugin {
	case pluginNative:
		if login.Stage1 == nil && login.Password != nil {
			if len(login.Password) == 0 {
				return nil, nil
			}
			s1 := sha1.Sum(login.Password)
			return scrambleReply(trimNul(data), s1[:]), nil
		}
		return scrambleReply(trimNul(data), login.Stage1), nil
	case pluginSHA2:
		if login.Password == nil {
			return nil, fmt.Errorf("%w: %s", errNeedPassword, plugin)
		}
		return mysql.CalcCachingSha2Password(trimNul(data), login.Password), nil
	case pluginEd25519:
		if login.Password == nil {
			return nil, fmt.Errorf("%w: %s", errNeedPassword, plugin)
		}
		if len(data) != 32 {
			return nil, fmt.Errorf("%w: client_ed25519 nonce of %d bytes", errMalformed, len(data))
		}
		return ed25519Sign(login.Password, data), nil
	case pluginClear:
		if login.Password == nil {
			return nil, fmt.Errorf("%w: %s", errNeedPassword, plugin)
		}
		if !tls {
			return nil, errors.New("the server asks for mysql_clear_password on a connection without TLS; Sluice sends a password only over TLS (tls.backend)")
		}
		return append(bytes.Clone(login.Password), 0), nil
	}
	return nil, fmt.Errorf("the server asks for auth plugin %q, which Sluice does not speak (it speaks mysql_native_password, caching_sha2_password, client_ed25519)", plugin)
}

// ed25519Expand is MariaDB's key derivation (plugin/auth_ed25519/ref10,
// crypto_sign_keypair): SHA-512 of the password itself, not of a 32-byte
// seed; the clamped first half is the secret scalar, the second half the
// signing prefix.
func ed25519Expand(password []byte) (*edwards25519.Scalar, []byte) {
	h := sha512.Sum512(password)
	s, _ := edwards25519.NewScalar().SetBytesWithClamping(h[:32]) // 32 bytes: never fails
	return s, h[32:]
}

// ed25519PublicKey is the public key MariaDB stores (base64) for password.
func ed25519PublicKey(password []byte) []byte {
	s, _ := ed25519Expand(password)
	return (&edwards25519.Point{}).ScalarBaseMult(s).Bytes()
}

// ed25519Sign signs msg as MariaDB's client_ed25519 does (ref10's
// crypto_sign with the password for a seed): a standard Ed25519 signature
// that crypto/ed25519 verifies against ed25519PublicKey(password).
func ed25519Sign(password, msg []byte) []byte {
	s, prefix := ed25519Expand(password)
	a := (&edwards25519.Point{}).ScalarBaseMult(s).Bytes()
	h := sha512.New()
	h.Write(prefix)
	h.Write(msg)
	r, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	rb := (&edwards25519.Point{}).ScalarBaseMult(r).Bytes()
	h.Reset()
	h.Write(rb)
	h.Write(a)
	h.Write(msg)
	k, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
	sig := edwards25519.NewScalar().MultiplyAdd(k, s, r)
	return append(rb, sig.Bytes()...)
}

// ParseEd25519Key decodes an ed25519 account's authentication_string: the
// base64 (unpadded, as MariaDB writes it) of a 32-byte public key.
func ParseEd25519Key(s string) ([]byte, error) {
	b, err := base64.RawStdEncoding.DecodeString(trimPad(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not an ed25519 public key")
	}
	return b, nil
}

func trimPad(s string) string {
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	return s
}

// sha2CryptLen is the length of MySQL's caching_sha2_password string:
// "$A$" + 3 hex digits of rounds/1000 + "$" + 20 bytes of salt + 43
// characters of SHA-256-crypt digest.
const sha2CryptLen = 3 + 3 + 1 + 20 + 43

// ParseSHA2Hash checks a caching_sha2_password authentication_string
// ($A$005$...; empty for an account without a password).
func ParseSHA2Hash(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if len(s) != sha2CryptLen || s[:3] != "$A$" || s[6] != '$' {
		return "", errors.New("not a caching_sha2_password hash")
	}
	if n, err := strconv.ParseUint(s[3:6], 16, 16); err != nil || n == 0 {
		return "", errors.New("caching_sha2_password hash: bad rounds")
	}
	return s, nil
}

// checkSHA2Hash checks password against a $A$ string (SHA-256-crypt with
// a 20-byte salt, MySQL's sha2_password; tidb's parser implements it).
func checkSHA2Hash(hash string, password []byte) bool {
	if hash == "" {
		return len(password) == 0
	}
	if len(hash) != sha2CryptLen {
		return false
	}
	ok, err := tidbauth.CheckHashingPassword([]byte(hash), string(password), pluginSHA2)
	return err == nil && ok
}

// checkPassword tells whether password is the account's, against what the
// account stores: the password itself (config accounts), a native hash, an
// ed25519 public key or a caching_sha2 hash.
func (a *Account) checkPassword(password []byte) bool {
	switch {
	case a.password != nil:
		return subtle.ConstantTimeCompare(a.password, password) == 1
	case a.Plugin == accountEd25519:
		return len(a.Ed25519Key) == ed25519.PublicKeySize &&
			subtle.ConstantTimeCompare(ed25519PublicKey(password), a.Ed25519Key) == 1
	case a.Plugin == pluginSHA2:
		return checkSHA2Hash(a.SHA2Hash, password)
	default:
		if len(a.Stage2) == 0 {
			return len(password) == 0
		}
		s1 := sha1.Sum(password)
		s2 := sha1.Sum(s1[:])
		return subtle.ConstantTimeCompare(s2[:], a.Stage2) == 1
	}
}

// credential identifies what the account stores: a learned password is
// wiped when it changes.
func (a *Account) credential() string {
	switch a.Plugin {
	case accountEd25519:
		return a.Plugin + ":" + string(a.Ed25519Key)
	case pluginSHA2:
		return a.Plugin + ":" + a.SHA2Hash
	}
	return a.Plugin + ":" + string(a.Stage2)
}

// verifyEd25519 checks a client's client_ed25519 signature of nonce.
func (a *Account) verifyEd25519(nonce, sig []byte) bool {
	if len(a.Ed25519Key) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(a.Ed25519Key), nonce, sig)
}

// sha2FastReply is what a client holding password answers to scramble on
// caching_sha2_password's fast path.
func sha2FastReply(scramble, password []byte) []byte {
	return mysql.CalcCachingSha2Password(scramble, password)
}

// parseCredential fills in what an account's authentication_string holds
// for its plugin; false for a string Sluice cannot use (the account is
// left out). An account of another plugin is kept, so that its logins are
// refused with a reason naming the plugin.
func parseCredential(a *Account, s string) bool {
	var err error
	switch a.Plugin {
	case "", pluginNative:
		a.Plugin = pluginNative
		a.Stage2, err = ParseNativeHash(strings.TrimSpace(s))
	case accountEd25519:
		a.Ed25519Key, err = ParseEd25519Key(strings.TrimSpace(s))
	case pluginSHA2:
		a.SHA2Hash, err = ParseSHA2Hash(strings.Clone(s))
	}
	return err == nil
}
