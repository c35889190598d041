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
}

// newSockIO is conn's raw reader and writer, or conn itself when it is not
// a socket (a TLS connection, a pipe in a test).
func newSockIO(conn net.Conn) io.ReadWriter {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return conn
	}
	if _, isTCP := conn.(*net.TCPConn); !isTCP {
		if _, isUnix := conn.(*net.UnixConn); !isUnix {
			return conn
		}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return conn
	}
	return &sockIO{rc: rc}
}

func (s *sockIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			if e == unix.EINTR {
				continue
			}
			n, errno = int(r), e
			return e != unix.EAGAIN
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: errno}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *sockIO) Write(p []byte) (int, error) {
	written := 0
	var errno syscall.Errno
	err := s.rc.Write(func(fd uintptr) bool {
		for written < len(p) {
			rest := p[written:]
			r, _, e := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
			switch e {
			case 0:
				written += int(r)
				continue
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait until the socket takes more
			}
			errno = e
			return true
		}
		return true
	})
	switch {
	case err != nil:
		return written, err
	case errno != 0:
		return written, &net.OpError{Op: "write", Net: "tcp", Err: errno}
	}
	return written, nil
}
