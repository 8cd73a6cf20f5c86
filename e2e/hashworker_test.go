//go:build linux

package e2e

import (
	"syscall"
	"testing"
	"time"
)

// TestHashWorkersEndWithTheProxy: the proxy hashes passwords in worker
// processes of its own (see package password). They log people in, and none
// outlives the proxy: not after a drain, not after SIGKILL, when nothing
// gets to close them.
func TestHashWorkersEndWithTheProxy(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.AddUser(device, "1111", "1111", false)
	login(t, s.Proxy, device, "1111", "1111")
	workers := childPIDs(s.Proxy.cmd.Process.Pid)
	if len(workers) == 0 {
		t.Fatal("the proxy runs no hash worker")
	}
	s.Proxy.Stop()
	waitGone(t, "after SIGTERM", workers)

	p := s.StartProxy()
	login(t, p, device, "1111", "1111")
	workers = childPIDs(p.cmd.Process.Pid)
	if len(workers) == 0 {
		t.Fatal("the restarted proxy runs no hash worker")
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	waitGone(t, "after SIGKILL", workers)
}

// waitGone waits until none of pids is running.
func waitGone(t *testing.T, when string, pids []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for running(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("hash worker %d still running %s", pid, when)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// running reports whether process pid exists and is not a zombie (the
// child of a killed parent waits as one until whoever adopts it reaps it).
func running(pid int) bool {
	f := statFields(pid)
	return len(f) > 0 && f[0] != "Z"
}
