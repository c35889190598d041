package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/sluice-proxy/sluice/internal/confkey"
)

// Config is the admin interface's part of sluice.yaml: the admin_* keys at
// the top level.
type Config struct {
	// Listen is the admin listener's host:port. Default 127.0.0.1:8989.
	Listen string `yaml:"admin_listen"`
	// Token, when set, is one user with the admin role, named
	// "admin_token": how the admin API was guarded before users and roles.
	// TokenFile holds it instead (confkey.ResolveSecrets).
	Token     string `yaml:"admin_token"`
	TokenFile string `yaml:"admin_token_file"`
	// Users are the people and programs that call the API, each with a
	// token (or a file holding it) and a role.
	Users []User `yaml:"admin_users"`
	// AllowAnonymous lets a listener beyond loopback run without users:
	// anyone who reaches it is admin. Off, that is a config error.
	AllowAnonymous bool `yaml:"admin_allow_anonymous"`
	// TLS serves the admin listener over TLS; with ClientCA, clients must
	// present a certificate it signed.
	TLS TLS `yaml:"admin_tls"`
}

// User is one admin API user. TokenFile, when set, holds the token
// (confkey.ResolveSecrets reads it into Token).
type User struct {
	Name      string `yaml:"name"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	Role      Role   `yaml:"role"`
}

// TLS is admin_tls.
type TLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// WithDefaults returns a copy of c with defaults filled in.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8989"
	}
	return c
}

// Validate checks c (after WithDefaults); its errors are *confkey.Error
// naming the key.
func (c *Config) Validate() error {
	if err := confkey.CheckAddr("admin_listen", c.Listen); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("admin_users[%d]", i)
		switch {
		case u.Name == "":
			return confkey.Errorf(key+".name", "missing; name the user, as the audit of admin actions will")
		case names[u.Name] || u.Name == tokenUser && c.Token != "":
			return confkey.Errorf(key+".name", "%q is named twice", u.Name)
		case !u.Role.valid():
			return confkey.Errorf(key+".role", "%q is not a role; use viewer, auditor, operator or admin", u.Role)
		case u.Token == "":
			return confkey.Errorf(key, "give token or token_file")
		}
		names[u.Name] = true
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return confkey.Errorf("admin_tls", "give both cert and key")
	}
	if c.TLS.ClientCA != "" && c.TLS.Cert == "" {
		return confkey.Errorf("admin_tls.client_ca", "needs admin_tls.cert and key: client certificates are asked for over TLS")
	}
	if c.TLS.Cert != "" {
		if _, err := c.TLS.ServerConfig(); err != nil {
			return confkey.Errorf("admin_tls", "%v", err)
		}
	}
	if c.Token == "" && len(c.Users) == 0 && !c.AllowAnonymous && !loopback(c.Listen) {
		return confkey.Errorf("admin_listen", "%s is reachable beyond this machine and the admin API has no users: anyone reaching it could switch the primary over; add admin_users (or admin_token), or set admin_allow_anonymous: true to accept that", c.Listen)
	}
	return nil
}

// tokenUser names the user admin_token stands for.
const tokenUser = "admin_token"

// loopback reports whether addr only listens on a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServerConfig is the admin listener's TLS config.
func (t *TLS) ServerConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("cert %s and key %s: %w", t.Cert, t.Key, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		pem, err := os.ReadFile(t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca %s holds no PEM certificate", t.ClientCA)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Credentials are the users a request's token is checked against: names,
// roles and the SHA-256 of each token (compared in constant time, and never
// kept in the clear past the config).
type Credentials struct {
	users []credential
	// anonymous: no users at all, so every request is an admin's (a
	// loopback listener, or admin_allow_anonymous).
	anonymous bool
}

type credential struct {
	name string
	role Role
	hash [32]byte
}

// Credentials reads the users of c, their token files included.
func (c *Config) Credentials() (*Credentials, error) {
	cr := &Credentials{}
	if c.Token != "" {
		cr.users = append(cr.users, credential{tokenUser, RoleAdmin, sha256.Sum256([]byte(c.Token))})
	}
	for _, u := range c.Users {
		cr.users = append(cr.users, credential{u.Name, u.Role, sha256.Sum256([]byte(u.Token))})
	}
	cr.anonymous = len(cr.users) == 0
	return cr, nil
}

// user finds who a request's bearer token belongs to.
func (cr *Credentials) user(r *http.Request) (credential, bool) {
	if cr == nil || cr.anonymous {
		return credential{name: "anonymous", role: RoleAdmin}, true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return credential{}, false
	}
	h := sha256.Sum256([]byte(tok))
	found, match := credential{}, 0
	for _, u := range cr.users {
		// Every user is compared, so the time says nothing of which matched.
		if subtle.ConstantTimeCompare(h[:], u.hash[:]) == 1 {
			found, match = u, 1
		}
	}
	return found, match == 1
}
