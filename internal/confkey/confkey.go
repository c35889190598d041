// Package confkey is how a package that owns a section of sluice.yaml
// reports a bad value: its Validate names the key relative to its section
// ("causal_reads_timeout"), and the config loader, which knows where the
// section sits in the file, prefixes the section's name
// ("router.causal_reads_timeout") and finds the line.
package confkey

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Error is a bad value of Key, a dotted path relative to the section
// ("accounts[2].user", "user_max_connections.bob").
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return e.Key + ": " + e.Msg }

// Errorf is an *Error for key.
func Errorf(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// In places err's key inside section: "type" in "router" is "router.type".
// An error that names no key is about the whole section. section "" is the
// top level of the file.
func In(section string, err error) *Error {
	var ke *Error
	if !errors.As(err, &ke) {
		return &Error{Key: section, Msg: err.Error()}
	}
	key := ke.Key
	switch {
	case section == "":
	case key == "":
		key = section
	default:
		key = section + "." + key
	}
	return &Error{Key: key, Msg: ke.Msg}
}

// CheckAddr refuses an address that is not host:port with a port from 0
// to 65535.
func CheckAddr(key, addr string) error {
	if addr == "" {
		return Errorf(key, "missing; use host:port")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Errorf(key, "%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return Errorf(key, "port %q in %q is not a number from 0 to 65535", port, addr)
	}
	return nil
}
