package proxy

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// Account is one client account: the backends' own, or one from the config.
type Account struct {
	User string
	Host string
	// Plugin is the account's authentication plugin on the servers.
	Plugin string
	// Stage2 is SHA1(SHA1(password)), what mysql_native_password stores;
	// empty for an account without a password.
	Stage2 []byte
	// Ed25519Key is the public key an ed25519 account stores.
	Ed25519Key []byte
	// SHA2Hash is a caching_sha2_password account's $A$005$ string.
	SHA2Hash string
	// stage1 is SHA1(password) and password the password itself, known
	// only for accounts from the config.
	stage1   []byte
	password []byte
}

// NewConfigAccount makes an account whose password the config holds.
func NewConfigAccount(user, host, password string) Account {
	a := Account{User: user, Host: host, Plugin: mysql.AUTH_NATIVE_PASSWORD}
	if password != "" {
		s1 := sha1.Sum([]byte(password))
		s2 := sha1.Sum(s1[:])
		a.stage1, a.Stage2 = s1[:], s2[:]
	}
	a.password = []byte(password)
	return a
}

// ParseNativeHash decodes an authentication_string of the form *HEX.
func ParseNativeHash(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) != 41 || s[0] != '*' {
		return nil, fmt.Errorf("not a mysql_native_password hash")
	}
	return hex.DecodeString(s[1:])
}

// verify checks a mysql_native_password reply against the scramble and
// returns SHA1(password), which lets Sluice log in to the backends as the
// same user without ever knowing the password.
func (a *Account) verify(scramble, reply []byte) ([]byte, bool) {
	if len(a.Stage2) == 0 {
		return nil, len(reply) == 0
	}
	if len(reply) != sha1.Size || len(a.Stage2) != sha1.Size {
		return nil, false
	}
	h := sha1.New()
	h.Write(scramble)
	h.Write(a.Stage2)
	stage1 := mysql.Xor(reply, h.Sum(nil))
	candidate := sha1.Sum(stage1)
	if subtle.ConstantTimeCompare(candidate[:], a.Stage2) != 1 {
		return nil, false
	}
	return stage1, true
}

// scrambleReply is what a client holding stage1 = SHA1(password) answers to
// scramble: stage1 XOR SHA1(scramble + SHA1(stage1)).
func scrambleReply(scramble, stage1 []byte) []byte {
	if len(stage1) == 0 {
		return nil
	}
	stage2 := sha1.Sum(stage1)
	h := sha1.New()
	h.Write(scramble)
	h.Write(stage2[:])
	return mysql.Xor(h.Sum(nil), stage1)
}

// AccountSource loads the servers' accounts.
type AccountSource func(ctx context.Context) ([]Account, error)

// Accounts caches client accounts and reloads them, throttled, when a login
// names an unknown user or fails its check: an account created or changed
// on the servers works without restarting Sluice, and a client guessing
// passwords cannot hammer the servers.
type Accounts struct {
	load     AccountSource
	interval time.Duration
	log      *slog.Logger

	mu         sync.Mutex
	fromConfig []Account
	fromServer []Account
	lastLoad   time.Time
	loading    chan struct{}
	// learned holds the passwords learned from full authentications, by
	// account (user@host), in memory only; passwordTTL bounds their life.
	learned     map[string]*learnedPassword
	passwordTTL time.Duration
}

// learnedPassword is a password a client sent, checked against what its
// account stored then (credential).
type learnedPassword struct {
	password   []byte
	credential string
	expires    time.Time
}

// wipe overwrites the password: it leaves no copy behind in memory.
func (l *learnedPassword) wipe() { clear(l.password) }

// NewAccounts builds the cache; load may be nil when only config accounts exist.
func NewAccounts(load AccountSource, refreshInterval time.Duration, log *slog.Logger) *Accounts {
	return &Accounts{load: load, interval: refreshInterval, log: log, passwordTTL: 8 * time.Hour}
}

// SetAuthConfig applies the auth: section: how long a learned password
// is kept (password_cache_ttl).
func (a *Accounts) SetAuthConfig(c AuthConfig) {
	a.mu.Lock()
	if c.PasswordCacheTTL > 0 {
		a.passwordTTL = c.PasswordCacheTTL
	}
	a.mu.Unlock()
}

func accountKey(acct *Account) string { return acct.User + "@" + acct.Host }

// learn keeps password, which the caller checked against acct, to log in
// to the servers as acct.
func (a *Accounts) learn(acct *Account, password []byte) {
	if acct.password != nil {
		return // the config holds it
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.learned == nil {
		a.learned = map[string]*learnedPassword{}
	}
	key := accountKey(acct)
	if old := a.learned[key]; old != nil {
		old.wipe()
	}
	a.learned[key] = &learnedPassword{password: bytes.Clone(password), credential: acct.credential(), expires: time.Now().Add(a.passwordTTL)}
}

// password is acct's password, if Sluice holds it: from the config, or
// learned, unexpired and learned for what the account stores now. The
// caller gets its own copy.
func (a *Accounts) password(acct *Account) []byte {
	if acct.password != nil {
		return bytes.Clone(acct.password)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := accountKey(acct)
	l := a.learned[key]
	if l == nil {
		return nil
	}
	if time.Now().After(l.expires) || l.credential != acct.credential() {
		l.wipe()
		delete(a.learned, key)
		return nil
	}
	return bytes.Clone(l.password)
}

// forget wipes the password learned for acct.
func (a *Accounts) forget(acct *Account) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := accountKey(acct)
	if l := a.learned[key]; l != nil {
		l.wipe()
		delete(a.learned, key)
	}
}

// ForgetPasswords wipes every learned password (at shutdown, or to make
// every client authenticate in full again).
func (a *Accounts) ForgetPasswords() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for key, l := range a.learned {
		l.wipe()
		delete(a.learned, key)
	}
}

// LearnedPasswords is how many passwords Sluice holds, learned.
func (a *Accounts) LearnedPasswords() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.learned)
}

// sweepLearned wipes the passwords of accounts that are gone, changed or
// expired; a.mu is held.
func (a *Accounts) sweepLearned() {
	now := time.Now()
	for key, l := range a.learned {
		keep := false
		if now.Before(l.expires) {
			for _, list := range [][]Account{a.fromConfig, a.fromServer} {
				for i := range list {
					if accountKey(&list[i]) == key && list[i].credential() == l.credential {
						keep = true
					}
				}
			}
		}
		if !keep {
			l.wipe()
			delete(a.learned, key)
		}
	}
}

// SetConfigAccounts replaces the accounts declared in the config.
func (a *Accounts) SetConfigAccounts(accts []Account) {
	a.mu.Lock()
	a.fromConfig = sortAccounts(accts)
	a.sweepLearned()
	a.mu.Unlock()
}

// errAccessDenied is the refusal every failed login gets, whatever the reason,
// so a client learns nothing about which accounts exist.
func errAccessDenied(user, host string, usingPassword bool) *SQLError {
	using := "NO"
	if usingPassword {
		using = "YES"
	}
	return newSQLError(mysql.ER_ACCESS_DENIED_ERROR, "Access denied for user '%s'@'%s' (using password: %s)", user, host, using)
}

// lookupRefresh returns the account user from clientIP logs in as,
// reloading the accounts once (throttled) when there is none.
func (a *Accounts) lookupRefresh(ctx context.Context, user, clientIP string) *Account {
	if acct := a.lookup(user, clientIP); acct != nil {
		return acct
	}
	if !a.refresh(ctx) {
		return nil
	}
	return a.lookup(user, clientIP)
}

// reloaded reloads the accounts (throttled) after a failed check of acct
// and returns its new version if what it stores changed: a password
// changed on the servers works at once.
func (a *Accounts) reloaded(ctx context.Context, acct *Account, clientIP string) *Account {
	if !a.refresh(ctx) {
		return nil
	}
	next := a.lookup(acct.User, clientIP)
	if next == nil || next.Host != acct.Host || next.credential() == acct.credential() {
		return nil
	}
	return next
}

// Lookup returns the account that user from clientIP logs in as, if any.
func (a *Accounts) Lookup(user, clientIP string) *Account { return a.lookup(user, clientIP) }

func (a *Accounts) lookup(user, clientIP string) *Account {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, list := range [][]Account{a.fromConfig, a.fromServer} {
		for i := range list {
			if list[i].User == user && hostMatches(list[i].Host, clientIP) {
				acct := list[i]
				return &acct
			}
		}
	}
	return nil
}

// Load loads the servers' accounts now, unthrottled (at start and on reload).
func (a *Accounts) Load(ctx context.Context) error {
	if a.load == nil {
		return nil
	}
	accts, err := a.load(ctx)
	a.mu.Lock()
	a.lastLoad = time.Now()
	if err == nil {
		a.fromServer = sortAccounts(accts)
		a.sweepLearned()
	}
	a.mu.Unlock()
	return err
}

// refresh reloads the accounts unless that happened within the refresh
// interval; concurrent callers share one load. It reports whether a load ran.
func (a *Accounts) refresh(ctx context.Context) bool {
	if a.load == nil {
		return false
	}
	a.mu.Lock()
	if ch := a.loading; ch != nil {
		a.mu.Unlock()
		select {
		case <-ch:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !a.lastLoad.IsZero() && time.Since(a.lastLoad) < a.interval {
		a.mu.Unlock()
		return false
	}
	ch := make(chan struct{})
	a.loading = ch
	a.mu.Unlock()

	err := a.Load(ctx)
	if err != nil {
		a.log.Warn("reloading client accounts failed; keeping the ones loaded before", "err", err)
	}
	a.mu.Lock()
	a.loading = nil
	a.mu.Unlock()
	close(ch)
	return err == nil
}

// sortAccounts orders accounts as the server matches them: the most specific
// host first, so 'app'@'10.0.0.5' wins over 'app'@'%'.
func sortAccounts(accts []Account) []Account {
	out := slices.Clone(accts)
	slices.SortStableFunc(out, func(x, y Account) int {
		return hostSpecificity(y.Host) - hostSpecificity(x.Host)
	})
	return out
}

func hostSpecificity(host string) int {
	i := strings.IndexAny(host, "%_")
	if i < 0 {
		return 1 << 16
	}
	return i
}

// hostMatches matches a client IP against an account's host: a literal,
// a LIKE pattern with % and _, or an ip/netmask pair. With names unresolved
// (as skip-name-resolve servers do), localhost matches loopback clients.
func hostMatches(pattern, ip string) bool {
	if pattern == "" || pattern == "%" {
		return true
	}
	if strings.EqualFold(pattern, "localhost") {
		parsed := net.ParseIP(ip)
		return parsed != nil && parsed.IsLoopback()
	}
	if addr, mask, ok := strings.Cut(pattern, "/"); ok {
		a, m, c := net.ParseIP(addr).To4(), net.ParseIP(mask).To4(), net.ParseIP(ip).To4()
		if a == nil || m == nil || c == nil {
			return false
		}
		for i := range 4 {
			if c[i]&m[i] != a[i] {
				return false
			}
		}
		return true
	}
	return likeMatch(strings.ToLower(pattern), strings.ToLower(ip))
}

// likeMatch implements SQL LIKE with % and _ (backslash escapes them).
func likeMatch(p, s string) bool {
	for len(p) > 0 {
		switch p[0] {
		case '%':
			for len(p) > 0 && p[0] == '%' {
				p = p[1:]
			}
			if p == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if likeMatch(p, s[i:]) {
					return true
				}
			}
			return false
		case '_':
			if s == "" {
				return false
			}
			p, s = p[1:], s[1:]
		case '\\':
			if len(p) > 1 {
				p = p[1:]
			}
			fallthrough
		default:
			if s == "" || p[0] != s[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return s == ""
}

// errNoAccounts is returned by a source that found no usable server.
var errNoAccounts = errors.New("no server answered the account query")
