package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process: the upstream, the bare proxy or a proxy.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tailWriter // stdout and stderr, the last few KiB
	done chan struct{}
	err  error // of Wait, once done is closed
}

// startProc starts bin with args and exactly the environment env (plus
// PATH): nothing of the bench's own environment leaks into a measurement.
// onLine, if not nil, sees every line the process writes.
func startProc(name, bin string, args []string, env map[string]string, onLine func(string)) (*proc, error) {
	p := &proc{name: name, out: &tailWriter{max: 16 << 10, onLine: onLine}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	setDeathSignal(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop asks the process to drain and exit (SIGTERM) and kills it if it has
// not within 15 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exited returns an error describing the process's end, with its last
// output, or nil while it runs.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v): %s", p.name, p.err, p.out.tail())
	default:
		return nil
	}
}

// tailWriter keeps the last max bytes written and reports whole lines.
type tailWriter struct {
	max    int
	onLine func(string)

	mu   sync.Mutex
	buf  []byte
	line []byte
}

func (w *tailWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	if len(w.buf) > w.max {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-w.max:]...)
	}
	if w.onLine != nil {
		w.line = append(w.line, b...)
		for {
			i := bytes.IndexByte(w.line, '\n')
			if i < 0 {
				break
			}
			w.onLine(string(w.line[:i]))
			w.line = w.line[i+1:]
		}
	}
	return len(b), nil
}

func (w *tailWriter) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(string(w.buf))
}

// startSelf runs this program's subcommand (upstream, bareproxy) and
// returns the address it announced on its first line.
func startSelf(name string, args ...string) (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("find own executable: %w", err)
	}
	addrc := make(chan string, 1)
	p, err := startProc(name, self, args, nil, func(line string) {
		var a struct{ Addr string }
		if json.Unmarshal([]byte(line), &a) == nil && a.Addr != "" {
			select {
			case addrc <- a.Addr:
			default:
			}
		}
	})
	if err != nil {
		return nil, "", err
	}
	select {
	case addr := <-addrc:
		return p, addr, nil
	case <-p.done:
		return nil, "", p.exited()
	case <-time.After(10 * time.Second):
		p.stop()
		return nil, "", fmt.Errorf("%s did not announce its address: %s", name, p.out.tail())
	}
}

// proxyProc is a running authsidecar proxy.
type proxyProc struct {
	*proc
	addr, metricsAddr string
}

// startProxy runs the proxy binary with env plus its two listening
// addresses. With LOG_LEVEL=warn the proxy does not log where it listens,
// so the bench picks free ports itself and tries again, on other ports,
// in the rare case another process took one in between.
// onLine, if not nil, sees every line the proxy logs.
func startProxy(ctx context.Context, name, bin string, env map[string]string, onLine func(string)) (*proxyProc, error) {
	var lastErr error
	for range 3 {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		metricsAddr, err := freePort()
		if err != nil {
			return nil, err
		}
		vars := map[string]string{"LISTEN_ADDR": addr, "METRICS_ADDR": metricsAddr}
		for k, v := range env {
			vars[k] = v
		}
		p, err := startProc(name, bin, nil, vars, onLine)
		if err != nil {
			return nil, err
		}
		pp := &proxyProc{proc: p, addr: addr, metricsAddr: metricsAddr}
		err = pp.waitReady(ctx)
		if err == nil {
			return pp, nil
		}
		p.stop()
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

// freePort returns a loopback address nobody listens on right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls /readyz until the proxy answers 200 (it listens, the
// database answers, the schema is current).
func (p *proxyProc) waitReady(ctx context.Context) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := p.exited(); err != nil {
			return err
		}
		resp, err := hc.Get("http://" + p.addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30s: %s", p.name, p.out.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitListening waits until the proxy listens for session changes: before
// that its session cache answers nothing and every request is checked in
// the database.
func (p *proxyProc) waitListening(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		v, err := scrape(p.metricsAddr, "authsidecar_listener_up")
		if err == nil && v == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: session-change listener not up after 15s (%v): %s", p.name, err, p.out.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var errNoMetric = errors.New("metric not found")

// scrape returns the sum of every sample of metric on /metrics at addr.
func scrape(addr, metric string) (float64, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scrape %s: status %d", addr, resp.StatusCode)
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, metric)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue // another metric, or a longer name with this prefix
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("scrape %s: %w", addr, err)
	}
	if !found {
		return 0, fmt.Errorf("%s on %s: %w", metric, addr, errNoMetric)
	}
	return sum, nil
}

// cpuTime is the CPU time (user + system) the process has used so far,
// from /proc/<pid>/stat; an error where there is no /proc.
func (p *proc) cpuTime() (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis are plain. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unreadable /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("unreadable /proc stat: %w", err)
	}
	// Linux reports clock ticks of 1/100 s (USER_HZ) on every architecture Go supports.
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
