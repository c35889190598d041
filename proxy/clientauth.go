package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// clientLogin is what a client's authentication yields: its account and
// what Sluice logs in to the servers with.
type clientLogin struct {
	acct     *Account
	stage1   []byte
	password []byte
}

// authenticate checks the credentials of user, who answered the handshake
// (or COM_CHANGE_USER) for clientPlugin with reply, moving the client to
// its account's plugin as a server does (decideAuth). s.authPlugin names
// the plugin the attempt ran with, for the audit record.
func (s *Session) authenticate(ctx context.Context, user, clientPlugin string, reply []byte) (*clientLogin, error) {
	cfg := s.srv.cfg.Load()
	accepted := cfg.Auth.Plugins
	if len(accepted) == 0 {
		accepted = DefaultAuthPlugins
	}
	offered := handshakePlugin(accepted)
	s.authPlugin = clientPlugin
	if s.authPlugin == "" || s.caps&mysql.CLIENT_PLUGIN_AUTH == 0 {
		s.authPlugin = pluginNative
	}
	acct := s.srv.accounts.lookupRefresh(ctx, user, s.clientIP)
	if acct == nil {
		// As for a native account, so that the exchange does not tell
		// which accounts exist.
		d := decideAuth(authInput{AccountPlugin: pluginNative, ClientPlugin: clientPlugin, PluginAuth: s.caps&mysql.CLIENT_PLUGIN_AUTH != 0,
			Offered: offered, Accepted: []string{pluginNative}})
		if d.Switch {
			s.authPlugin = pluginNative
			if _, err := s.authSwitchTo(pluginNative, s.scramble); err != nil {
				return nil, err
			}
		}
		return nil, errAccessDenied(user, s.clientIP, len(reply) > 0)
	}
	password := s.srv.accounts.password(acct)
	rsaOn := cfg.Auth.RSAPrivateKey != ""
	d := decideAuth(authInput{
		AccountPlugin: acct.Plugin, ClientPlugin: clientPlugin, PluginAuth: s.caps&mysql.CLIENT_PLUGIN_AUTH != 0,
		Offered: offered, Accepted: accepted, TLS: s.tls, RSA: rsaOn, HavePassword: password != nil,
	})
	switch d.Refuse {
	case refusePlugin:
		s.log.Warn("account's authentication plugin is not one Sluice accepts (auth.plugins) or the client cannot switch to it",
			"user", user, "host", acct.Host, "plugin", acct.Plugin, "accepted", accepted)
		return nil, errAccessDenied(user, s.clientIP, len(reply) > 0)
	case refuseNeedsTLS:
		s.authPlugin = d.Plugin
		return nil, needsTLSError(acct)
	}
	s.authPlugin = d.Plugin
	data := s.scramble
	if d.Plugin == pluginEd25519 {
		data = make([]byte, 32)
		_, _ = rand.Read(data)
	}
	if d.Switch {
		var err error
		if reply, err = s.authSwitchTo(d.Plugin, data); err != nil {
			if d.Plugin == pluginClear {
				s.log.Warn("the client would not send its password (mysql_clear_password over TLS), which Sluice needs once to log in to the servers as this account; allow cleartext over TLS in the client (mariadb --enable-cleartext-plugin, go-sql-driver allowCleartextPasswords=true) or use a mysql_native_password account",
					"user", user, "host", acct.Host, "plugin", acct.Plugin)
			}
			return nil, err
		}
	}
	var check func(a *Account) (*clientLogin, bool)
	switch d.Plugin {
	case pluginNative:
		check = func(a *Account) (*clientLogin, bool) {
			stage1, ok := a.verify(s.scramble, reply)
			if a.stage1 != nil {
				stage1 = a.stage1
			}
			return &clientLogin{acct: a, stage1: stage1, password: s.srv.accounts.password(a)}, ok
		}
	case pluginClear:
		sent := trimNul(reply)
		check = func(a *Account) (*clientLogin, bool) { return s.learned(a, sent) }
	case pluginEd25519:
		check = func(a *Account) (*clientLogin, bool) {
			return &clientLogin{acct: a, password: s.srv.accounts.password(a)}, a.verifyEd25519(data, reply)
		}
	case pluginSHA2:
		sent, err := s.sha2Exchange(acct, reply, password, cfg)
		if err != nil {
			var se *SQLError
			if errors.As(err, &se) && se.Code == mysql.ER_ACCESS_DENIED_ERROR {
				// Perhaps the password changed on the servers: reload
				// (throttled) so the next attempt sees it.
				s.srv.accounts.reloaded(ctx, acct, s.clientIP)
			}
			return nil, err
		}
		if sent == nil { // fast authentication passed
			return &clientLogin{acct: acct, password: password}, nil
		}
		check = func(a *Account) (*clientLogin, bool) { return s.learned(a, sent) }
	}
	login, ok := check(acct)
	if !ok {
		if next := s.srv.accounts.reloaded(ctx, acct, s.clientIP); next != nil && clientPluginFor(next.Plugin) == clientPluginFor(acct.Plugin) {
			login, ok = check(next)
		}
	}
	if !ok {
		return nil, errAccessDenied(user, s.clientIP, len(reply) > 0)
	}
	if login.password == nil && clientPluginFor(login.acct.Plugin) != pluginNative {
		// The account changed on the servers under a client that proved
		// the new password without sending it: Sluice cannot log in yet.
		return nil, needsTLSError(login.acct)
	}
	return login, nil
}

// learned checks a password the client sent against a and, if it is a's,
// keeps it to log in to the servers.
func (s *Session) learned(a *Account, password []byte) (*clientLogin, bool) {
	if !a.checkPassword(password) {
		return nil, false
	}
	s.srv.accounts.learn(a, password)
	l := &clientLogin{acct: a, password: bytes.Clone(password)}
	if len(password) > 0 {
		s1 := sha1.Sum(password)
		l.stage1 = s1[:]
	}
	return l, true
}

// needsTLSError is the refusal of a client that must send its password
// (for Sluice to log in to the servers, or to check it over
// caching_sha2_password) and will not send it safely.
func needsTLSError(acct *Account) *SQLError {
	if acct.Plugin == pluginNative {
		return newSQLError(errSecureTransportRequired,
			"Sluice checks the password of '%s'@'%s' (plugin %s) over caching_sha2_password (auth.plugins), whose full authentication needs TLS or RSA keys: connect with TLS, configure auth.rsa_private_key/auth.rsa_public_key, or add mysql_native_password to auth.plugins",
			acct.User, acct.Host, acct.Plugin)
	}
	return newSQLError(errSecureTransportRequired,
		"Sluice needs the password of '%s'@'%s' (plugin %s) to log in to the servers, and takes it only over TLS: connect with TLS (and for %s allow mysql_clear_password once, e.g. mariadb --ssl --enable-cleartext-plugin, go-sql-driver allowCleartextPasswords=true), configure auth.rsa_private_key/auth.rsa_public_key for caching_sha2_password, or use a mysql_native_password account",
		acct.User, acct.Host, acct.Plugin, accountEd25519)
}

// authSwitchTo sends an AuthSwitchRequest moving the client to plugin
// with data (the scramble, or client_ed25519's nonce) and reads the
// client's answer.
func (s *Session) authSwitchTo(plugin string, data []byte) ([]byte, error) {
	req := make([]byte, 0, 2+len(plugin)+len(data)+1)
	req = append(req, mysql.EOF_HEADER)
	req = append(req, plugin...)
	req = append(req, 0)
	switch plugin {
	case pluginEd25519:
		req = append(req, data...) // exactly 32 bytes, no NUL
	case pluginClear:
	default:
		req = append(req, data...)
		req = append(req, 0)
	}
	if err := s.client.Send(req); err != nil {
		return nil, err
	}
	reply, err := s.client.ReadPacket()
	if err != nil {
		return nil, fmt.Errorf("read auth switch response (%s): %w", plugin, err)
	}
	return bytes.Clone(reply), nil
}

// caching_sha2_password's AuthMoreData bytes.
const (
	sha2FastOK       = 3
	sha2FullAuth     = 4
	sha2RequestKey   = 2
	moreDataHeader   = mysql.MORE_DATE_HEADER
	sha2MaxPassword  = 1024
	errSha2NeedsKeys = "caching_sha2_password full authentication of '%s'@'%s' needs TLS or RSA keys: connect with TLS, or configure auth.rsa_private_key and auth.rsa_public_key"
)

// sha2Step is how a caching_sha2_password exchange goes on after the
// client's first answer.
type sha2Step int

const (
	// sha2Empty: the client sent no password; the account must have none.
	sha2Empty sha2Step = iota
	// sha2Fast: the fast-path answer matches the password Sluice holds.
	sha2Fast
	// sha2FullTLS, sha2FullRSA: full authentication, the password in
	// clear over TLS or RSA-encrypted.
	sha2FullTLS
	sha2FullRSA
	// sha2Deny: Sluice holds the password, the answer is not for it, and
	// full authentication has no safe channel: a wrong password.
	sha2Deny
	// sha2NeedsSecure: full authentication is needed and has no safe
	// channel (MySQL refuses it too).
	sha2NeedsSecure
)

// sha2Path decides a caching_sha2_password exchange: emptyReply (no
// password sent), held (Sluice holds the account's password), fastOK (the
// fast-path answer matches it), tls and rsa (keys configured).
func sha2Path(emptyReply, held, fastOK, tls, rsa bool) sha2Step {
	switch {
	case emptyReply:
		return sha2Empty
	case held && fastOK:
		return sha2Fast
	case tls:
		return sha2FullTLS
	case rsa:
		return sha2FullRSA
	case held:
		return sha2Deny
	}
	return sha2NeedsSecure
}

// sha2Exchange runs caching_sha2_password with the client: the fast path
// when Sluice holds the account's password (nil returned), else full
// authentication, whose password it returns unchecked.
func (s *Session) sha2Exchange(acct *Account, reply, password []byte, cfg *Config) ([]byte, error) {
	fastOK := len(password) > 0 && len(reply) > 0 && sha2FastMatches(s.scramble, password, reply)
	var keys *rsaKeys
	switch sha2Path(len(reply) == 0, password != nil, fastOK, s.tls, cfg.Auth.RSAPrivateKey != "") {
	case sha2Empty:
		return []byte{}, nil // an empty password: nothing more is sent
	case sha2Fast:
		return nil, s.client.Send([]byte{moreDataHeader, sha2FastOK})
	case sha2Deny:
		return nil, errAccessDenied(acct.User, s.clientIP, true)
	case sha2NeedsSecure:
		return nil, newSQLError(errSecureTransportRequired, errSha2NeedsKeys, acct.User, acct.Host)
	case sha2FullRSA:
		var err error
		if keys, err = cfg.Auth.LoadRSAKeys(); err != nil || keys == nil {
			s.log.Warn("caching_sha2_password: cannot load the RSA keys", "err", err)
			return nil, newSQLError(errSecureTransportRequired, errSha2NeedsKeys, acct.User, acct.Host)
		}
	}
	if err := s.client.Send([]byte{moreDataHeader, sha2FullAuth}); err != nil {
		return nil, err
	}
	pkt, err := s.client.ReadPacket()
	if err != nil {
		return nil, fmt.Errorf("read caching_sha2_password full authentication: %w", err)
	}
	if s.tls {
		if len(pkt) > sha2MaxPassword {
			return nil, errAccessDenied(acct.User, s.clientIP, true)
		}
		return bytes.Clone(trimNul(pkt)), nil
	}
	if len(pkt) == 1 && pkt[0] == sha2RequestKey {
		if err := s.client.Send(append([]byte{moreDataHeader}, keys.pubPEM...)); err != nil {
			return nil, err
		}
		if pkt, err = s.client.ReadPacket(); err != nil {
			return nil, fmt.Errorf("read caching_sha2_password encrypted password: %w", err)
		}
	}
	plain, err := rsa.DecryptOAEP(sha1.New(), nil, keys.priv, pkt, nil)
	if err != nil {
		return nil, errAccessDenied(acct.User, s.clientIP, true)
	}
	for i := range plain {
		plain[i] ^= s.scramble[i%len(s.scramble)]
	}
	return trimNul(plain), nil
}

// sha2FastMatches checks a fast-path reply. The AuthSwitchRequest carries
// the scramble NUL-terminated, as MySQL sends it (libmariadb insists on
// the 21 bytes); PyMySQL before 1.1 hashes the NUL with it, which proves
// the password as well, so that answer is taken too.
func sha2FastMatches(scramble, password, reply []byte) bool {
	ok := subtle.ConstantTimeCompare(sha2FastReply(scramble, password), reply)
	ok |= subtle.ConstantTimeCompare(sha2FastReply(append(bytes.Clone(scramble), 0), password), reply)
	return ok == 1
}

// rsaKeys are auth.rsa_private_key and auth.rsa_public_key, loaded.
type rsaKeys struct {
	priv   *rsa.PrivateKey
	pubPEM []byte
}

// LoadRSAKeys reads the RSA key pair; nil, nil when none is configured.
func (c *AuthConfig) LoadRSAKeys() (*rsaKeys, error) {
	if c.RSAPrivateKey == "" {
		return nil, nil
	}
	privPEM, err := os.ReadFile(c.RSAPrivateKey)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(privPEM)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", c.RSAPrivateKey)
	}
	var priv *rsa.PrivateKey
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		priv, _ = k.(*rsa.PrivateKey)
	} else if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		priv = k
	}
	if priv == nil {
		return nil, fmt.Errorf("%s: not an RSA private key (PKCS#1 or PKCS#8 PEM)", c.RSAPrivateKey)
	}
	pubPEM, err := os.ReadFile(c.RSAPublicKey)
	if err != nil {
		return nil, err
	}
	pub, err := parseRSAPublicKey(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.RSAPublicKey, err)
	}
	if !pub.Equal(&priv.PublicKey) {
		return nil, fmt.Errorf("%s is not the public key of %s", c.RSAPublicKey, c.RSAPrivateKey)
	}
	return &rsaKeys{priv: priv, pubPEM: pubPEM}, nil
}

// parseRSAPublicKey reads a PEM public key (PKIX, as MySQL sends it, or PKCS#1).
func parseRSAPublicKey(b []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKIXPublicKey(block.Bytes); err == nil {
		if pub, ok := k.(*rsa.PublicKey); ok {
			return pub, nil
		}
	}
	if pub, err := x509.ParsePKCS1PublicKey(block.Bytes); err == nil {
		return pub, nil
	}
	return nil, errors.New("not an RSA public key")
}
