package password

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// The test binary is its own worker: started with workerEnv set, it serves
// the worker protocol instead of running tests.
const workerEnv = "AUTHSIDECAR_TEST_HASH_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		if err := ServeWorker(os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testWorker() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// Under -race, a process sleeps a second at exit unless told not to.
	cmd.Env = append(os.Environ(), workerEnv+"=1", "GORACE=atexit_sleep_ms=0")
	return cmd
}

func newWorkerHasher(t *testing.T, opts Options) *Hasher {
	t.Helper()
	opts.Worker = testWorker
	opts.Share = 1
	h := newHasher(t, opts)
	t.Cleanup(h.Close)
	return h
}

// workerPID is the process id of the worker behind h's only slot.
func workerPID(t *testing.T, h *Hasher) int {
	t.Helper()
	pw := h.workers[0].(*procWorker)
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.proc == nil {
		t.Fatal("no worker process is running")
	}
	return pw.proc.cmd.Process.Pid
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestWorkerProcessHashesAndVerifies(t *testing.T) {
	t.Parallel()
	h := newWorkerHasher(t, Options{Concurrency: 2})
	ctx := context.Background()
	enc, err := h.Hash(ctx, "4321")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("unexpected encoding %q", enc)
	}
	if ok, err := h.Verify(ctx, "4321", enc); err != nil || !ok {
		t.Fatalf("right password: ok=%v err=%v", ok, err)
	}
	if ok, err := h.Verify(ctx, "4322", enc); err != nil || ok {
		t.Fatalf("wrong password: ok=%v err=%v", ok, err)
	}
	if ok, err := h.Verify(ctx, "dummy password for unknown accounts", ""); err != nil || ok {
		t.Fatalf("unknown account: ok=%v err=%v", ok, err)
	}
	// A hash this process wrote verifies in a worker and the other way round.
	local := newHasher(t, Options{})
	if ok, err := local.Verify(ctx, "4321", enc); err != nil || !ok {
		t.Fatalf("worker's hash in process: ok=%v err=%v", ok, err)
	}
	enc2, _ := local.Hash(ctx, "1234")
	if ok, err := h.Verify(ctx, "1234", enc2); err != nil || !ok {
		t.Fatalf("in-process hash in a worker: ok=%v err=%v", ok, err)
	}
	if _, err := h.Verify(ctx, "x", "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5"); !errors.Is(err, ErrMalformedHash) {
		t.Fatalf("hostile hash: %v, want ErrMalformedHash", err)
	}
}

// A worker process says how much CPU time a request took it, for its
// slot's rest (see Options.Share).
func TestWorkerProcessReportsCPUTime(t *testing.T) {
	t.Parallel()
	h := newWorkerHasher(t, Options{Concurrency: 1, Params: OWASP})
	resp, err := h.workers[0].run(request{Op: opHash, Password: "1111", Params: OWASP})
	if err != nil || resp.Error != "" {
		t.Fatalf("hash: %v %s", err, resp.Error)
	}
	if runtime.GOOS != "linux" {
		if resp.CPU != 0 {
			t.Fatalf("worker reported %v of CPU time where it cannot read it", resp.CPU)
		}
		return
	}
	// An argon2id hash at m=19 MiB, t=2 takes tens of milliseconds of a
	// core on any machine; a tenth of one is the floor of what is real.
	if resp.CPU < 100*time.Microsecond {
		t.Fatalf("worker reported %v of CPU time for a hash", resp.CPU)
	}
}

func TestWorkerProcessRunsAtLowestPriority(t *testing.T) {
	t.Parallel()
	h := newWorkerHasher(t, Options{Concurrency: 1})
	if low, desc := isLowPriority(workerPID(t, h)); !low {
		t.Fatalf("worker process priority: %s", desc)
	}
}

// TestDeadWorkerIsReplaced: a worker killed between two logins (or during
// one) costs nothing but a restart.
func TestDeadWorkerIsReplaced(t *testing.T) {
	t.Parallel()
	h := newWorkerHasher(t, Options{Concurrency: 1})
	ctx := context.Background()
	pid := workerPID(t, h)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	enc, err := h.Hash(ctx, "1111")
	if err != nil {
		t.Fatalf("after the worker died: %v", err)
	}
	if ok, err := h.Verify(ctx, "1111", enc); err != nil || !ok {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	if again := workerPID(t, h); again == pid {
		t.Fatalf("still the killed worker %d", pid)
	}
}

// TestHungWorkerIsKilled: a worker that does not answer is killed and the
// caller told the proxy is busy, instead of waiting forever.
func TestHungWorkerIsKilled(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 1, Share: 1, Worker: func() *exec.Cmd { return exec.Command("sleep", "60") }})
	t.Cleanup(h.Close)
	pid := workerPID(t, h)
	pw := h.workers[0].(*procWorker)
	pw.mu.Lock()
	proc := pw.proc
	pw.mu.Unlock()
	pw.timeout = 50 * time.Millisecond // instead of answerTimeout
	if _, err := pw.try(request{Op: opHash, Password: "x", Params: cheap}); !errors.Is(err, auth.ErrBusy) {
		t.Fatalf("a worker that never answers: got %v, want auth.ErrBusy", err)
	}
	select {
	case <-proc.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("the hung worker %d was not killed", pid)
	}
}

func TestCloseStopsWorkers(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 2, Share: 1, Worker: testWorker})
	pids := []int{}
	for _, w := range h.workers {
		pw := w.(*procWorker)
		pids = append(pids, pw.proc.cmd.Process.Pid)
	}
	h.Close()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("worker %d still running after Close", pid)
		}
	}
	if _, err := h.Hash(context.Background(), "1111"); err == nil {
		t.Fatal("hashing after Close succeeded")
	}
}
