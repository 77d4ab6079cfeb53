//go:build !linux

package rediscluster

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }
