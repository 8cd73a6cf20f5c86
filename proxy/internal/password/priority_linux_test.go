package password

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// isLowPriority reports whether the main thread of process pid (0: the
// calling thread) runs at hashNice or lower in priority, and not under
// SCHED_IDLE, where a host busy with other work starves every hash.
func isLowPriority(pid int) (bool, string) {
	attr, err := unix.SchedGetAttr(pid, 0)
	if err != nil {
		return false, err.Error()
	}
	desc := fmt.Sprintf("policy %d, nice %d", attr.Policy, attr.Nice)
	return attr.Policy != unix.SCHED_IDLE && int(attr.Nice) >= hashNice, desc
}
