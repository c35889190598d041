package logbroker

// SASL authentication: SaslHandshake (key 17) and SaslAuthenticate (key 36).
//
// SaslHandshake v0-1: the client names a mechanism; v0 means the SASL
// tokens follow as raw size-prefixed frames (no request header), v1 that
// they come wrapped in SaslAuthenticate requests.
// SaslAuthenticate v0-2: one SASL token each way; v1+ answers carry the
// session lifetime (KIP-368), after which the client re-authenticates on
// the same connection (a new SaslHandshake v1 and SaslAuthenticate) as the
// same principal, or the broker closes the connection.
//
// Mechanisms: SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802/7677, through
// github.com/xdg-go/scram) and PLAIN (RFC 4616), checked against the
// SCRAM-SHA-512 credentials, so no password is ever stored.

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/xdg-go/scram"
)

// saslUsers holds the salted SCRAM credentials derived at start. The
// passwords they came from are not kept.
type saslUsers struct {
	iters    int
	users    map[string]userCredentials
	fakeKey  []byte // salts of made-up credentials for unknown names
	sha256   *scram.Server
	sha512   *scram.Server
	mechs    []string
	lifetime time.Duration
}

type userCredentials struct {
	sha256, sha512 scram.StoredCredentials
}

// errAuthFailed is the one message a failed authentication gets, whether
// the user exists or not.
var errAuthFailed = errors.New("authentication failed: invalid user name or password")

// loadSASLUsers derives every user's credentials from its password or
// password_file. Errors name the key, never the password.
func loadSASLUsers(cfg SASLConfig) (*saslUsers, error) {
	if len(cfg.Users) == 0 {
		return nil, nil
	}
	s := &saslUsers{iters: cfg.ScramIterations, users: make(map[string]userCredentials), mechs: cfg.Mechanisms, lifetime: cfg.SessionLifetime}
	s.fakeKey = make([]byte, 32)
	if _, err := rand.Read(s.fakeKey); err != nil {
		return nil, err
	}
	for i, u := range cfg.Users {
		pw := []byte(u.Password)
		if u.Password == "" {
			b, err := os.ReadFile(u.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("broker.sasl.users[%d].password_file: %w", i, err)
			}
			pw = bytes.TrimRight(b, "\r\n")
		}
		if len(pw) == 0 {
			return nil, fmt.Errorf("broker.sasl.users[%d]: the password of %q is empty", i, u.Name)
		}
		var uc userCredentials
		for _, h := range []struct {
			fcn scram.HashGeneratorFcn
			out *scram.StoredCredentials
		}{{scram.SHA256, &uc.sha256}, {scram.SHA512, &uc.sha512}} {
			salt := make([]byte, 16)
			if _, err := rand.Read(salt); err != nil {
				return nil, err
			}
			cl, err := h.fcn.NewClient(u.Name, string(pw), "")
			if err != nil {
				// SASLprep refused the name or the password; say which
				// key without repeating either.
				return nil, fmt.Errorf("broker.sasl.users[%d]: name or password has characters SASLprep (RFC 4013) does not allow", i)
			}
			*h.out = cl.GetStoredCredentials(scram.KeyFactors{Salt: string(salt), Iters: s.iters})
		}
		clear(pw) // our copy; the strings made of it are left to the GC
		s.users[u.Name] = uc
	}
	var err error
	if s.sha256, err = scram.SHA256.NewServer(func(name string) (scram.StoredCredentials, error) { return s.lookup(name).sha256, nil }); err != nil {
		return nil, err
	}
	if s.sha512, err = scram.SHA512.NewServer(func(name string) (scram.StoredCredentials, error) { return s.lookup(name).sha512, nil }); err != nil {
		return nil, err
	}
	return s, nil
}

// lookup returns name's credentials or, for an unknown name, made-up ones
// with a stable salt, so that the exchange runs the same way and fails
// only at the proof: a client cannot tell which names exist.
func (s *saslUsers) lookup(name string) userCredentials {
	if uc, ok := s.users[name]; ok {
		return uc
	}
	mac := hmac.New(sha256.New, s.fakeKey)
	mac.Write([]byte(name))
	sum := mac.Sum(nil)
	fake := scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(sum[:16]), Iters: s.iters}, StoredKey: sum[16:], ServerKey: sum[16:]}
	return userCredentials{sha256: fake, sha512: fake}
}

// checkPlain verifies a PLAIN token (authzid NUL authcid NUL password)
// and returns the user name.
func (s *saslUsers) checkPlain(token []byte) (string, error) {
	parts := strings.Split(string(token), "\x00")
	if len(parts) != 3 || parts[1] == "" || (parts[0] != "" && parts[0] != parts[1]) {
		return "", errAuthFailed
	}
	name, pw := parts[1], parts[2]
	stored := s.lookup(name).sha512
	cl, err := scram.SHA512.NewClient(name, pw, "")
	if err != nil {
		return "", errAuthFailed
	}
	got := cl.GetStoredCredentials(stored.KeyFactors)
	_, known := s.users[name]
	if subtle.ConstantTimeCompare(got.StoredKey, stored.StoredKey) != 1 || !known {
		return "", errAuthFailed
	}
	return name, nil
}

// saslSession is the SASL state of one connection.
type saslSession struct {
	mech      string // from the last SaslHandshake; "" when none is pending
	raw       bool   // SaslHandshake v0: tokens come as raw frames
	conv      *scram.ServerConversation
	principal string    // authenticated user; "" before
	expiry    time.Time // zero: never
}

func (s *saslUsers) offers(mech string) bool {
	for _, m := range s.mechs {
		if m == mech {
			return true
		}
	}
	return false
}

// step feeds one client token to the exchange. done reports a completed
// authentication of user; an error fails it.
func (s *saslUsers) step(ss *saslSession, token []byte) (reply []byte, user string, done bool, err error) {
	switch ss.mech {
	case MechPlain:
		user, err := s.checkPlain(token)
		return nil, user, err == nil, err
	case MechScramSHA256, MechScramSHA512:
		if ss.conv == nil {
			srv := s.sha512
			if ss.mech == MechScramSHA256 {
				srv = s.sha256
			}
			ss.conv = srv.NewConversation()
		}
		out, err := ss.conv.Step(string(token))
		if err != nil {
			// xdg-go/scram's errors name the step that failed (a bad
			// proof, a nonce mismatch), never a secret.
			return nil, "", false, fmt.Errorf("%w (%v)", errAuthFailed, err)
		}
		if !ss.conv.Done() {
			return []byte(out), "", false, nil
		}
		if !ss.conv.Valid() {
			return nil, "", false, errAuthFailed
		}
		return []byte(out), ss.conv.Username(), true, nil
	}
	return nil, "", false, errors.New("no SASL mechanism chosen: send SaslHandshake first")
}

// handleSASLHandshake chooses the mechanism of the exchange that follows.
func (b *Broker) handleSASLHandshake(cs *connState, req *kmsg.SASLHandshakeRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = []string{}
	s := b.sasl
	if s == nil {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp
	}
	resp.SupportedMechanisms = append(resp.SupportedMechanisms, s.mechs...)
	switch {
	case !s.offers(req.Mechanism):
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
	case cs.sasl.principal != "" && req.Version == 0:
		// Re-authentication exists only with SaslAuthenticate (KIP-368).
		resp.ErrorCode = kerr.IllegalSaslState.Code
	default:
		cs.sasl.mech, cs.sasl.raw, cs.sasl.conv = req.Mechanism, req.Version == 0, nil
	}
	return resp
}

// handleSASLAuthenticate carries one step of the exchange chosen by the
// last SaslHandshake v1. A failed authentication is answered, then the
// connection is closed.
func (b *Broker) handleSASLAuthenticate(cs *connState, req *kmsg.SASLAuthenticateRequest) *pendingResponse {
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	resp.SASLAuthBytes = []byte{}
	if b.sasl == nil || cs.sasl.mech == "" || cs.sasl.raw {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = strPtr("SaslAuthenticate without a SaslHandshake v1 choosing the mechanism")
		return &pendingResponse{resp: resp, closeAfter: true, closeReason: "SaslAuthenticate before SaslHandshake"}
	}
	mech := cs.sasl.mech
	reply, done, err := b.saslStep(cs, req.SASLAuthBytes)
	if err != nil {
		b.counters.authFailures.Add(1)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = strPtr(errAuthFailed.Error())
		return &pendingResponse{resp: resp, closeAfter: true, closeReason: fmt.Sprintf("SASL %s authentication failed: %v", mech, err)}
	}
	if reply != nil {
		resp.SASLAuthBytes = reply
	}
	if done && b.sasl.lifetime > 0 {
		resp.SessionLifetimeMillis = b.sasl.lifetime.Milliseconds()
	}
	return &pendingResponse{resp: resp}
}

// saslStep runs one step for the connection and, once the exchange
// completes, makes its user the connection's principal. Re-authentication
// must be as the same principal.
func (b *Broker) saslStep(cs *connState, token []byte) (reply []byte, done bool, err error) {
	mech := cs.sasl.mech
	reply, user, done, err := b.sasl.step(&cs.sasl, token)
	if err != nil {
		cs.sasl.mech, cs.sasl.conv = "", nil
		return nil, false, err
	}
	if !done {
		return reply, false, nil
	}
	if cs.sasl.principal != "" && cs.sasl.principal != user {
		cs.sasl.mech, cs.sasl.conv = "", nil
		return nil, false, fmt.Errorf("re-authentication as %q on a connection of %q: it must be as the same user", user, cs.sasl.principal)
	}
	cs.sasl.principal = user
	cs.principal = user
	cs.sasl.mech, cs.sasl.conv, cs.sasl.raw = "", nil, false
	if b.sasl.lifetime > 0 {
		cs.sasl.expiry = time.Now().Add(b.sasl.lifetime)
	}
	cs.authenticated()
	b.log.Debug("SASL authenticated", "principal", user, "mechanism", mech)
	return reply, true, nil
}
