// Package lockfile makes a file or directory the property of one process:
// the bundled broker's data_dir and Genlog's spill file are each locked
// before anything reads or repairs them, so that a second Sluice started on
// the same data stops with an error naming the first one's pid instead of
// truncating segments the first one is writing.
//
// The lock is flock(2) on a small file holding the holder's pid. The kernel
// drops it when the process exits, however it exits, so a crash never
// leaves a stale lock behind; the file itself stays (removing it would race
// with a process that has just opened it).
package lockfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrLocked is wrapped by Acquire's error when another process holds the
// lock.
var ErrLocked = errors.New("locked by another process")

// Lock is a held lock; Release gives it up.
type Lock struct {
	path string
	f    *os.File
}

// Acquire takes the lock at path (created if missing) without waiting and
// writes this process's pid into it. what names the data being protected,
// for the error: "broker.data_dir /var/lib/sluice/broker".
func Acquire(path, what string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: open lock file: %w", what, err)
	}
	if err := lock(f); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%s is in use by %s (lock file %s): stop that process or give this one other data: %w", what, holder, path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s (lock file %s): %w", what, path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: write pid to %s: %w", what, path, err)
	}
	return &Lock{path: path, f: f}, nil
}

// Path is the lock file.
func (l *Lock) Path() string { return l.path }

// Release gives the lock up. It is safe to call on a nil Lock and more
// than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	return err
}
