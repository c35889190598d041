//go:build linux

package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loopbackPair is a connected TCP pair on loopback: the proxy's side and
// the peer's.
func loopbackPair(t *testing.T) (ours, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	ours, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer = <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { ours.Close(); peer.Close() })
	return ours, peer
}

// unread is how many bytes wait in the socket's receive queue.
func unread(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ioErr error
	if err := rc.Control(func(fd uintptr) { n, ioErr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		t.Fatal(err)
	}
	if ioErr != nil {
		t.Fatal(ioErr)
	}
	return n
}

// TestFlushAwaitWaitsForTheAnswer: FlushAwait returns once the answer is
// in the socket, so the read that follows finds it, however late or early
// the answer comes; and a read deadline ends the wait.
func TestFlushAwaitWaitsForTheAnswer(t *testing.T) {
	ours, peer := loopbackPair(t)
	p := NewPacketIO(ours)
	defer p.Close()
	peerIO := NewPacketIO(peer)

	// The peer echoes each command but "never", the first one after a
	// pause, until the connection closes.
	go func() {
		for i := 0; ; i++ {
			pkt, err := peerIO.ReadPacket()
			if err != nil {
				return
			}
			switch {
			case string(pkt) == "never":
				continue
			case i == 0:
				time.Sleep(30 * time.Millisecond) // the peer is slow this once
			}
			if peerIO.WritePacket(pkt) != nil || peerIO.Flush() != nil {
				return
			}
		}
	}()

	p.ResetSequence()
	if err := p.WritePacket([]byte("slow")); err != nil {
		t.Fatal(err)
	}
	if err := p.FlushAwait(); err != nil {
		t.Fatal(err)
	}
	if n := unread(t, ours); n == 0 {
		t.Fatal("FlushAwait returned before the answer arrived")
	}
	if got, err := p.ReadPacket(); err != nil || string(got) != "slow" {
		t.Fatalf("answer %q, %v", got, err)
	}

	// Answers that come at once are never missed: a missed one would
	// leave FlushAwait waiting, and the deadline would end it.
	_ = ours.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := range 3000 {
		p.ResetSequence()
		if err := p.WritePacket([]byte("fast")); err != nil {
			t.Fatal(err)
		}
		if err := p.FlushAwait(); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if got, err := p.ReadPacket(); err != nil || string(got) != "fast" {
			t.Fatalf("round %d: answer %q, %v", i, got, err)
		}
	}

	// A peer that never answers: the read deadline ends the wait.
	_ = ours.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	p.ResetSequence()
	_ = p.WritePacket([]byte("never"))
	err := p.FlushAwait()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("FlushAwait on a silent peer: %v, want a deadline error", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("FlushAwait waited %v past a 50ms deadline", waited)
	}
}

// TestFlushAwaitLargeCommand: a command larger than the socket takes at
// once is still sent whole before the wait.
func TestFlushAwaitLargeCommand(t *testing.T) {
	ours, peer := loopbackPair(t)
	p := NewPacketIO(ours)
	defer p.Close()
	peerIO := NewPacketIO(peer)
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i)
	}
	done := make(chan error, 1)
	go func() {
		pkt, err := peerIO.ReadPacket()
		if err == nil && len(pkt) != len(big) {
			err = errors.New("short command")
		}
		if err == nil {
			err = peerIO.WritePacket([]byte("ok"))
		}
		if err == nil {
			err = peerIO.Flush()
		}
		done <- err
	}()
	_ = ours.SetReadDeadline(time.Now().Add(20 * time.Second))
	p.ResetSequence()
	if err := p.WritePacket(big); err != nil {
		t.Fatal(err)
	}
	if err := p.FlushAwait(); err != nil {
		t.Fatal(err)
	}
	if got, err := p.ReadPacket(); err != nil || string(got) != "ok" {
		t.Fatalf("answer %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
