//go:build linux

package faulttest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// mountTmpfs mounts a tmpfs of size at a new directory, or skips t when
// this process may not mount. Unmounted in cleanup (registered first, so
// it runs after the cleanups of processes using it).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// growTmpfs remounts the tmpfs at mnt with a new size.
func growTmpfs(t *testing.T, mnt, size string) {
	t.Helper()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT, "size="+size); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
}

// freeBytes is what an unprivileged writer may still write at mnt.
func freeBytes(mnt string) uint64 {
	var st syscall.Statfs_t
	syscall.Statfs(mnt, &st)
	return st.Bavail * uint64(st.Bsize)
}
