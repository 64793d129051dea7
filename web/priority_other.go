//go:build !linux

package web

// lowerPriority does nothing where threads have no priority of their own.
func lowerPriority() {}
