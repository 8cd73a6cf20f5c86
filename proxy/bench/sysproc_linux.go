package main

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill cmd when the bench dies, even by
// SIGKILL, so that no upstream or proxy outlives a run.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
