//go:build !linux

package e2e

import "syscall"

// childAttr: only Linux can tie a child's life to its parent's; elsewhere the cleanups alone
// stop the processes.
func childAttr() *syscall.SysProcAttr { return nil }
