//go:build linux

package lab

import "syscall"

// DieWithParent makes sig the parent-death signal of a child started with
// attr (delivered when the thread that forked it exits: see Spawn).
func DieWithParent(attr *syscall.SysProcAttr, sig syscall.Signal) *syscall.SysProcAttr {
	attr.Pdeathsig = sig
	return attr
}
