//go:build !linux

package proxy

import (
	"io"
	"net"
)

// sockIO is never made off Linux, where the raw recvfrom/sendto path is
// not built: newSockIO returns conn itself, so reads and writes go through
// net.Conn and FlushAwait is a plain Flush. The type only has what
// PacketIO refers to.
type sockIO struct {
	io.ReadWriter
	awaitAnswer bool
}

// newSockIO returns conn itself off Linux (see sockIO).
func newSockIO(conn net.Conn) io.ReadWriter { return conn }
