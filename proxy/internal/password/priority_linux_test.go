package password

import "syscall"

// threadNice returns the calling thread's nice value.
func threadNice() int {
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	if err != nil {
		return -100
	}
	return 20 - prio
}

// expectedNice is hashNice, or the process's own nice value if that is
// lower priority already.
func expectedNice() int { return max(hashNice, threadNice()) }
