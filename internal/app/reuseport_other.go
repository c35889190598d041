//go:build !linux

package app

import "syscall"

// reusePort is nil off Linux: listen_reuseport sets no socket option (Run
// warns), since other kernels' SO_REUSEPORT does not spread connections
// over the processes sharing a port as the deployment it serves expects.
var reusePort func(network, address string, c syscall.RawConn) error
