package password

import (
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// hashNice is the nice value of hashing threads where SCHED_IDLE is
// refused: the lowest priority a normal thread can have.
const hashNice = 19

// lowerThreadPriority moves the calling thread to SCHED_IDLE, the class
// the kernel runs only when nothing else wants the CPU, or failing that
// (a sandbox refusing it) to hashNice. Lowering one's own priority needs
// no privilege. On Linux both act on the calling thread only, and threads
// (and processes) it creates inherit them. Failure of both leaves the
// priority as it was: slower to protect other traffic, never wrong.
func lowerThreadPriority() {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	if unix.SchedSetAttr(0, &attr, 0) == nil {
		return
	}
	tid := syscall.Gettid()
	// The raw syscall answers 20 - nice, to keep the result positive.
	if prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid); err == nil && 20-prio >= hashNice {
		return
	}
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, hashNice)
}

// killWithParent has the kernel kill the worker when the thread that
// started it ends (see spawn), which it does at the latest when the proxy
// dies.
func killWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
