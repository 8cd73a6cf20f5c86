package password

import "syscall"

// hashNice is the nice value of hashing threads: weight 110 against 1024
// for a normal thread, so that under contention a hash gets about a tenth
// of a core and never delays proxied traffic for long.
const hashNice = 10

// lowerThreadPriority lowers the calling thread's priority to hashNice,
// unless it is lower already. On Linux, setpriority with a thread id acts
// on that thread only. Failure (a sandbox refusing it) leaves the priority
// as it was: slower to protect other traffic, never wrong.
func lowerThreadPriority() {
	tid := syscall.Gettid()
	// The raw syscall answers 20 - nice, to keep the result positive.
	if prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid); err == nil && 20-prio >= hashNice {
		return
	}
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, hashNice)
}
