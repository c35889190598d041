//go:build !linux

package lab

import "testing"

// NeedFiles does nothing off Linux: the open files limit is left as the
// shell set it (ulimit -n).
func NeedFiles(tb testing.TB, n uint64) {}
