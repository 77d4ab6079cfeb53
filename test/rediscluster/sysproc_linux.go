package rediscluster

import "syscall"

// childAttr kills a node when the test binary dies, so a timed-out test leaves no cluster.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
