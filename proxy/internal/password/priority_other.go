//go:build !linux

package password

// lowerThreadPriority is a no-op where threads' priorities cannot be set
// portably; the bounded concurrency still protects other traffic.
func lowerThreadPriority() {}
