//go:build !linux

package faulttest

import "testing"

// mountTmpfs skips t off Linux: the tests that fill a small disk mount a
// Linux tmpfs (mount(2) with size=), so they run on Linux only.
func mountTmpfs(t *testing.T, size string) string {
	t.Skip("needs a Linux tmpfs mount")
	return ""
}

// growTmpfs is not reached off Linux (mountTmpfs skips first).
func growTmpfs(t *testing.T, mnt, size string) { t.Fatal("no tmpfs off Linux") }

// freeBytes is not reached off Linux (mountTmpfs skips first).
func freeBytes(mnt string) uint64 { return 0 }
