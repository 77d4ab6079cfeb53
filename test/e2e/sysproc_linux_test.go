//go:build linux

package e2e

import "syscall"

// childAttr makes the kernel kill a child process if the test binary dies without running
// its cleanups (a -timeout panic, a kill), so no brain, model or Redis outlives the run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
