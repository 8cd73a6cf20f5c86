package password

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
)

// Why hashes run in worker processes: an argon2id hash allocates ~19 MiB,
// so in the serving process every login costs a garbage collection, and
// each collection stops the world until the hashing thread (running at a
// lowered priority, so rarely on a CPU) reaches a safe point. Measured on
// two cores, that alone doubled proxied requests' p99 during a login
// flood. A worker process has its own heap and collector: the server's
// heap stays small and quiet, and the kernel alone decides, by priority,
// who gets the CPU.

// request and response are the worker protocol: one JSON object per line
// each way, one request at a time.
type request struct {
	Op       string `json:"op"`
	Password string `json:"password"`
	Hash     string `json:"hash,omitempty"`   // verify: the encoded hash
	Params   Params `json:"params,omitempty"` // hash: the cost
}

type response struct {
	Hash  string `json:"hash,omitempty"`
	OK    bool   `json:"ok,omitempty"`
	Error string `json:"error,omitempty"`
	// CPU is the CPU time the worker process spent on the request (0 where
	// it cannot tell): what its slot rests for (see Options.Share).
	CPU time.Duration `json:"cpu_ns,omitempty"`
}

const (
	opHash   = "hash"
	opVerify = "verify"
)

// answerTimeout bounds how long a worker may take to answer. A hash takes
// tens of milliseconds; a worker starved of CPU (it runs at a lower
// priority) or hung is killed, and the login gets auth.ErrBusy.
const answerTimeout = 10 * time.Second

// ServeWorker is the main loop of a worker process: it answers requests
// read from r on w until r ends. The command that Options.Worker makes must
// run it with the process's standard input and output.
func ServeWorker(r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("hash worker: read request: %w", err)
		}
		before := processCPU()
		resp := compute(req)
		if before > 0 {
			resp.CPU = processCPU() - before
		}
		if err := enc.Encode(resp); err != nil {
			return fmt.Errorf("hash worker: write answer: %w", err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("hash worker: write answer: %w", err)
		}
	}
}

// worker runs requests one at a time.
type worker interface {
	run(request) (response, error)
	close()
}

// inProcess hashes in this process, on a thread of lowered priority.
type inProcess struct{}

func (inProcess) run(req request) (resp response, err error) {
	lowPriority(func() { resp = compute(req) })
	return resp, nil
}

func (inProcess) close() {}

// lowPriority runs f on an OS thread of its own whose scheduling priority
// is lowered (where the system allows it), and waits for it. The goroutine
// exits still locked to its thread, so the thread ends with it and never
// runs other goroutines at the lowered priority.
func lowPriority(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		lowerThreadPriority()
		defer close(done)
		f()
	}()
	<-done
}

// procWorker is a worker process. Only the goroutine holding its slot uses
// it, but close may come from anywhere.
type procWorker struct {
	command func() *exec.Cmd
	timeout time.Duration // for an answer; answerTimeout if 0

	mu     sync.Mutex
	closed bool
	proc   *process
}

// process is one running worker process.
type process struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	dec    *json.Decoder
	exited chan struct{}
}

func (p *procWorker) run(req request) (response, error) {
	resp, err := p.try(req)
	if err != nil && !errors.Is(err, auth.ErrBusy) {
		// The process died or garbled its answer (it is gone now): one
		// more try on a fresh one. Hashing has no side effects.
		resp, err = p.try(req)
	}
	return resp, err
}

func (p *procWorker) try(req request) (response, error) {
	proc, err := p.current()
	if err != nil {
		return response{}, err
	}
	line, err := json.Marshal(req)
	if err != nil {
		return response{}, err
	}
	timeout := p.timeout
	if timeout <= 0 {
		timeout = answerTimeout
	}
	if err := proc.stdout.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		p.discard(proc)
		return response{}, fmt.Errorf("hash worker: %w", err)
	}
	if _, err := proc.stdin.Write(append(line, '\n')); err != nil {
		p.discard(proc)
		return response{}, fmt.Errorf("hash worker: send: %w", err)
	}
	var resp response
	if err := proc.dec.Decode(&resp); err != nil {
		p.discard(proc)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return response{}, fmt.Errorf("hash worker: no answer within %s: %w", timeout, auth.ErrBusy)
		}
		return response{}, fmt.Errorf("hash worker: read answer: %w", err)
	}
	return resp, nil
}

// current is the running process, started if there is none.
func (p *procWorker) current() (*process, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("hash worker: closed")
	}
	if p.proc != nil {
		return p.proc, nil
	}
	proc, err := spawn(p.command())
	if err != nil {
		return nil, err
	}
	p.proc = proc
	return proc, nil
}

func (p *procWorker) start() error {
	_, err := p.current()
	return err
}

// discard kills proc and forgets it, so that the next request starts a
// fresh one.
func (p *procWorker) discard(proc *process) {
	p.mu.Lock()
	if p.proc == proc {
		p.proc = nil
	}
	p.mu.Unlock()
	proc.stop(0)
}

func (p *procWorker) close() {
	p.mu.Lock()
	proc := p.proc
	p.closed, p.proc = true, nil
	p.mu.Unlock()
	if proc != nil {
		proc.stop(2 * time.Second)
	}
}

// stop closes the process's input, on which it exits, and kills it if it
// has not within grace.
func (proc *process) stop(grace time.Duration) {
	_ = proc.stdin.Close()
	if grace > 0 {
		select {
		case <-proc.exited:
		case <-time.After(grace):
		}
	}
	_ = proc.cmd.Process.Kill()
	<-proc.exited
	_ = proc.stdout.Close()
}

// spawn starts cmd as a worker process at a lower CPU priority (hashNice). The
// priority is inherited: the process is forked from a thread whose
// priority was lowered first, and every thread it creates inherits it in
// turn, so no thread of the worker ever competes with proxied traffic.
// That thread then waits for the process and ends with it; on Linux the
// process is also killed if that thread ends first (the proxy died), so
// no worker outlives the proxy.
func spawn(cmd *exec.Cmd) (*process, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("hash worker: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		_ = inR.Close()
		_ = inW.Close()
		return nil, fmt.Errorf("hash worker: %w", err)
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	killWithParent(cmd)
	proc := &process{cmd: cmd, stdin: inW, stdout: outR, dec: json.NewDecoder(outR), exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		lowerThreadPriority()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(proc.exited)
	}()
	err = <-started
	// The child's ends of the pipes are the child's now.
	_ = inR.Close()
	_ = outW.Close()
	if err != nil {
		_ = inW.Close()
		_ = outR.Close()
		return nil, fmt.Errorf("hash worker: start %s: %w", cmd.Path, err)
	}
	return proc, nil
}
