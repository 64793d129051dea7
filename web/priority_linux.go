package web

import (
	"runtime"
	"syscall"
)

// lowerPriority runs the calling goroutine on its own OS thread at a lower
// CPU priority (nice 10), which the processes it starts — Terraform and its
// providers — inherit. Verification plans then yield the CPU to the API.
// The goroutine must not unlock the thread: when it ends, the thread ends
// with it, and no other goroutine runs at the lower priority.
func lowerPriority() {
	runtime.LockOSThread()
	syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 10)
}
