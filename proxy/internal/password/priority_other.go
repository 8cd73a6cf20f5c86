//go:build !linux

package password

import (
	"os/exec"
	"time"
)

// lowerThreadPriority is a no-op where threads' priorities cannot be set
// portably; the bounded concurrency and Share still protect other traffic.
func lowerThreadPriority() {}

// killWithParent is a no-op here: a worker still exits when its input
// closes, which it does when the proxy exits.
func killWithParent(*exec.Cmd) {}

// processCPU is 0 here: a slot then rests for the wall time of its hash
// (see Options.Share).
func processCPU() time.Duration { return 0 }
