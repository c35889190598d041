//go:build !linux

package app

import "time"

// setSchedSlice applies nothing off Linux: per-task scheduler slices
// (sched_setattr) are a Linux 6.12 feature. It reports 0 threads, so
// applySchedSlice logs that sched_slice has no effect, as on an older
// Linux kernel.
func setSchedSlice(slice time.Duration) (applied int, err error) {
	return 0, nil
}
