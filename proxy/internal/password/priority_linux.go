package password

import (
	"os/exec"
	"syscall"
	"time"
)

// hashNice is the nice value of hashing threads: a CFS weight of 110
// against a normal thread's 1024, so that proxied requests get the CPU
// first while they want it. Not lower: at SCHED_IDLE (weight 3) or nice 19
// (weight 15), a host kept busy by anything else, such as the backend the
// proxy sits beside, starved every hash: measured with two busy loops on
// two cores, no login finished within the worker's 10 s. The login flood's
// cost to proxied traffic is no worse at 10 (go run ./proxy/bench -only
// flood, three runs each, interleaved: p99 ×1.27, ×0.98, ×0.77 at nice 10;
// ×1.21, ×1.33, ×2.55 at SCHED_IDLE); the slots' rest (Options.Share) is
// what bounds it.
const hashNice = 10

// lowerThreadPriority sets the calling thread's nice value to hashNice.
// Lowering one's own priority needs no privilege. On Linux it acts on the
// calling thread only, and threads (and processes) it creates inherit it.
// Failure leaves the priority as it was: slower to protect other traffic,
// never wrong.
func lowerThreadPriority() {
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

// processCPU is the CPU time (user and system) this process has used so
// far, 0 if it cannot be read.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
