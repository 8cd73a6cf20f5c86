//go:build !linux

package password

// threadIsLowPriority: priorities are not set here (see priority_other.go).
func threadIsLowPriority() (bool, string) { return true, "not set on this system" }

func processIsLowPriority(int) (bool, string) { return true, "not set on this system" }
