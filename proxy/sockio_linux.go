//go:build linux

package proxy

import (
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockIO reads and writes a socket with raw system calls, waiting through
// Go's network poller only when the socket is not ready.
//
// Why: net.Conn's Read and Write enter the scheduler's syscall state. On a
// small machine a loopback send can take long enough (it runs the
// receiver's TCP stack and wakes it) that the runtime hands the processor
// to another thread meanwhile, and every hand-off costs a thread wake-up
// and context switches. A non-blocking read or write never blocks, so it
// needs no hand-off. Deadlines and Close from another goroutine work as
// with net.Conn, since waiting goes through the same poller.
type sockIO struct {
	rc syscall.RawConn
	// The poller calls readFn, writeFn and awaitFn, bound once, with the
	// buffer and results in these fields: no closure is allocated per call.
	readFn, writeFn, awaitFn func(fd uintptr) bool
	rbuf, wbuf               []byte
	rn, wn                   int
	rerr, werr               syscall.Errno
	// awaitAnswer makes the next Write return only once the socket is
	// readable (see PacketIO.FlushAwait); sent marks that Write's send done.
	awaitAnswer, sent bool
}

// newSockIO is conn's raw reader and writer, or conn itself when it is not
// a socket (a TLS connection, a pipe in a test).
func newSockIO(conn net.Conn) io.ReadWriter {
	switch conn.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return conn
	}
	rc, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return conn
	}
	s := &sockIO{rc: rc}
	s.readFn, s.writeFn, s.awaitFn = s.read, s.write, s.writeThenAwait
	return s
}

func (s *sockIO) read(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		s.rn, s.rerr = int(r), e
		return e != unix.EAGAIN
	}
}

func (s *sockIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rbuf = p
	err := s.rc.Read(s.readFn)
	s.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case s.rerr != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: s.rerr}
	case s.rn == 0:
		return 0, io.EOF
	}
	return s.rn, nil
}

func (s *sockIO) write(fd uintptr) bool {
	for s.wn < len(s.wbuf) {
		rest := s.wbuf[s.wn:]
		r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			s.wn += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false // wait until the socket takes more
		default:
			s.werr = e
			return true
		}
	}
	return true
}

// writeThenAwait sends inside the poller's read wait. The wait begins by
// clearing the socket's readiness, so it must begin before the send: then
// the answer, which can only come after the send, wakes it, and the read
// that follows finds data instead of a speculative read finding none (one
// system call fewer per command). A send the socket cannot take whole
// ends the wait; Write finishes it the usual way.
func (s *sockIO) writeThenAwait(fd uintptr) bool {
	if s.sent {
		return true // readable, or the poller reports an error or deadline
	}
	s.sent = true
	return !s.write(fd) || s.werr != 0
}

func (s *sockIO) Write(p []byte) (int, error) {
	s.wbuf, s.wn, s.werr = p, 0, 0
	var err error
	if s.awaitAnswer {
		s.awaitAnswer, s.sent = false, false
		err = s.rc.Read(s.awaitFn)
	}
	if err == nil && s.werr == 0 && s.wn < len(p) {
		err = s.rc.Write(s.writeFn)
	}
	s.wbuf = nil
	switch {
	case err != nil:
		return s.wn, err
	case s.werr != 0:
		return s.wn, &net.OpError{Op: "write", Net: "tcp", Err: s.werr}
	}
	return s.wn, nil
}
