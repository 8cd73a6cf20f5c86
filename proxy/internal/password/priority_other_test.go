//go:build !linux

package password

// isLowPriority: priorities are not set here (see priority_other.go).
func isLowPriority(int) (bool, string) { return true, "not set on this system" }
