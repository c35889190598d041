//go:build linux

package app

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePort is the client listener's Control under listen_reuseport: it
// sets SO_REUSEPORT, so several processes bind the same address and the
// kernel spreads new connections over them.
var reusePort = func(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
