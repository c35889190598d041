//go:build !linux

package lab

import "syscall"

// DieWithParent leaves attr as it is off Linux, where the harness is not
// run and Pdeathsig is missing (darwin) or untried: a child may outlive a
// test binary that panics or times out.
func DieWithParent(attr *syscall.SysProcAttr, sig syscall.Signal) *syscall.SysProcAttr {
	return attr
}
