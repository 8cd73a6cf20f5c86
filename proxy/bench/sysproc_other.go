//go:build !linux

package main

import "os/exec"

// setDeathSignal has no portable equivalent: elsewhere the bench stops its
// processes itself on exit and on Ctrl-C.
func setDeathSignal(*exec.Cmd) {}
