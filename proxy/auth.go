package proxy

import (
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
	// stage1 is SHA1(password), known only for accounts from the config.
	stage1 []byte
}

// NewConfigAccount makes an account whose password the config holds.
func NewConfigAccount(user, host, password string) Account {
	a := Account{User: user, Host: host, Plugin: mysql.AUTH_NATIVE_PASSWORD}
	if password != "" {
		s1 := sha1.Sum([]byte(password))
		s2 := sha1.Sum(s1[:])
		a.stage1, a.Stage2 = s1[:], s2[:]
	}
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
}

// NewAccounts builds the cache; load may be nil when only config accounts exist.
func NewAccounts(load AccountSource, refreshInterval time.Duration, log *slog.Logger) *Accounts {
	return &Accounts{load: load, interval: refreshInterval, log: log}
}

// SetConfigAccounts replaces the accounts declared in the config.
func (a *Accounts) SetConfigAccounts(accts []Account) {
	a.mu.Lock()
	a.fromConfig = sortAccounts(accts)
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

// Authenticate checks a native password reply for user connecting from
// clientIP, reloading accounts once (throttled) before refusing.
func (a *Accounts) Authenticate(ctx context.Context, user, clientIP string, scramble, reply []byte) (*Account, []byte, error) {
	for attempt := 0; ; attempt++ {
		acct := a.lookup(user, clientIP)
		if acct != nil && acct.Plugin != "" && acct.Plugin != mysql.AUTH_NATIVE_PASSWORD {
			a.log.Warn("account uses an authentication plugin Sluice cannot relay; use mysql_native_password or list the account in the config",
				"user", user, "host", acct.Host, "plugin", acct.Plugin)
			return nil, nil, errAccessDenied(user, clientIP, len(reply) > 0)
		}
		if acct != nil {
			if stage1, ok := acct.verify(scramble, reply); ok {
				if acct.stage1 != nil {
					stage1 = acct.stage1
				}
				return acct, stage1, nil
			}
		}
		if attempt > 0 || !a.refresh(ctx) {
			return nil, nil, errAccessDenied(user, clientIP, len(reply) > 0)
		}
	}
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
