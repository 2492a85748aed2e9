//go:build unix

package admin

import "syscall"

func umask(m int) int { return syscall.Umask(m) }
