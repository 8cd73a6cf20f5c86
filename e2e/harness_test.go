package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authsidecar/authsidecar/internal/testkit"
)

// Paths of the binaries built once by TestMain.
var proxyBin, backendBin, simulatorBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "authsidecar-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	proxyBin = filepath.Join(dir, "proxy")
	backendBin = filepath.Join(dir, "storage-backend")
	simulatorBin = filepath.Join(dir, "simulator")
	// One go build for the three: it links them in parallel.
	out, err := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "../proxy", "../storage-backend", "../simulator").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	code = checkRecorded(code) // every answer do() got must match docs/openapi.yaml
	os.RemoveAll(dir)
	os.Exit(code)
}

// databaseURL makes a schema of the test's own (see testkit.URL) and
// returns a URL that selects it.
func databaseURL(t *testing.T) string { return testkit.URL(t) }

// query runs one SQL statement on the test's schema and scans one row.
func query(t *testing.T, dbURL, sql string, args []any, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// process is a running binary whose JSON log lines are kept.
type process struct {
	t           *testing.T
	name        string
	cmd         *exec.Cmd
	Addr        string // host:port it listens on
	MetricsAddr string // host:port of /metrics (proxy only)
	done        chan struct{}

	mu   sync.Mutex
	logs bytes.Buffer
	err  error
}

// env builds a child environment: only what the test says, plus PATH.
func env(vars map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	return out
}

// start runs bin serve with vars and waits until it logs its listening
// address (LISTEN_ADDR is 127.0.0.1:0, so every process gets a free port).
func start(t *testing.T, bin string, vars map[string]string) *process {
	t.Helper()
	if _, ok := vars["LISTEN_ADDR"]; !ok {
		vars["LISTEN_ADDR"] = "127.0.0.1:0"
	}
	p := &process{t: t, name: filepath.Base(bin), done: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = env(vars)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.mu.Lock()
			p.logs.Write(line)
			p.logs.WriteByte('\n')
			p.mu.Unlock()
			var entry struct {
				Msg         string `json:"msg"`
				Addr        string `json:"addr"`
				MetricsAddr string `json:"metrics_addr"`
			}
			_ = json.Unmarshal(line, &entry)
			if entry.MetricsAddr != "" {
				p.mu.Lock()
				p.MetricsAddr = entry.MetricsAddr
				p.mu.Unlock()
			}
			if strings.Contains(entry.Msg, "listening") && entry.Addr != "" {
				select {
				case addr <- entry.Addr:
				default:
				}
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", p.name, p.Logs())
		}
	})
	select {
	case a := <-addr:
		p.Addr = a
	case <-p.done:
		t.Fatalf("%s exited before listening: %v\n%s", p.name, p.err, p.Logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start listening\n%s", p.name, p.Logs())
	}
	return p
}

// URL is the process's base URL.
func (p *process) URL() string { return "http://" + p.Addr }

// Logs returns everything the process logged so far.
func (p *process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Stop sends SIGTERM and waits for the process to exit.
func (p *process) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s did not exit within 30s of SIGTERM", p.name)
	}
}

// ExitCode waits for the process to end and returns its exit code.
func (p *process) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// stack is a storage-backend and a proxy in front of it on one schema.
type stack struct {
	t        *testing.T
	DB       string // the schema's URL; empty on the embedded store
	DataDir  string // the proxy's DATA_DIR on the embedded store
	Backend  *process
	Proxy    *process
	proxyEnv map[string]string
}

// newEmbeddedStack starts storage-backend and proxy on their embedded
// stores (no DATABASE_URL), each in a directory of the test's own.
func newEmbeddedStack(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	s := &stack{t: t, DataDir: filepath.Join(t.TempDir(), "proxy-data")}
	s.Backend = start(t, backendBin, map[string]string{"DATA_DIR": filepath.Join(t.TempDir(), "backend-data"), "LOG_LEVEL": "debug"})
	s.proxyEnv = map[string]string{
		"DATA_DIR":     s.DataDir,
		"UPSTREAM_URL": s.Backend.URL(),
		"METRICS_ADDR": "127.0.0.1:0",
		"LOG_LEVEL":    "debug",
	}
	for k, v := range extra {
		s.proxyEnv[k] = v
	}
	s.Proxy = s.StartProxy()
	return s
}

// newStack starts storage-backend and proxy on a fresh schema; extra
// overrides the proxy's settings.
func newStack(t *testing.T, extra map[string]string) *stack {
	t.Helper()
	return newStackOn(t, databaseURL(t), extra)
}

// newStackOn is newStack on a schema made by databaseURL; extra may give
// the proxy another DATABASE_URL (a path to the same schema).
func newStackOn(t *testing.T, db string, extra map[string]string) *stack {
	t.Helper()
	s := &stack{t: t, DB: db}
	s.Backend = start(t, backendBin, map[string]string{"DATABASE_URL": s.DB, "LOG_LEVEL": "debug"})
	s.proxyEnv = map[string]string{
		"DATABASE_URL": s.DB,
		"UPSTREAM_URL": s.Backend.URL(),
		"METRICS_ADDR": "127.0.0.1:0",
		"LOG_LEVEL":    "debug",
	}
	for k, v := range extra {
		s.proxyEnv[k] = v
	}
	s.Proxy = s.StartProxy()
	return s
}

// StartProxy starts another proxy process (a replica, or a restart) with the
// stack's settings.
func (s *stack) StartProxy() *process {
	vars := make(map[string]string, len(s.proxyEnv))
	for k, v := range s.proxyEnv {
		vars[k] = v
	}
	return start(s.t, proxyBin, vars)
}

// AddUser runs `proxy user add` with the password on stdin.
func (s *stack) AddUser(device, username, password string, admin bool) {
	s.t.Helper()
	args := []string{"user", "add", "--device", device, "--username", username}
	if admin {
		args = append(args, "--admin")
	}
	out, code := s.Command(password+"\n", args...)
	if code != 0 {
		s.t.Fatalf("proxy %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
}

// Command runs a proxy operator command against the stack's database and
// returns its combined output and exit code.
func (s *stack) Command(stdin string, args ...string) (string, int) {
	s.t.Helper()
	stdout, stderr, code := s.CommandOutput(stdin, args...)
	return stdout + stderr, code
}

// CommandOutput runs a proxy operator command like Command, with its
// stdout and stderr apart.
func (s *stack) CommandOutput(stdin string, args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	cmd := exec.Command(proxyBin, args...)
	if s.DB != "" {
		cmd.Env = env(map[string]string{"DATABASE_URL": s.DB})
	} else {
		cmd.Env = env(map[string]string{"DATA_DIR": s.DataDir})
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			s.t.Fatalf("proxy %v: %v", args, err)
		}
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// response is a decoded HTTP answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r response) JSON(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// retryBusy calls send again while it gets the answer to a login the proxy
// was too busy to check (503 "busy": every hash slot taken, as on a machine
// loaded by other tests), after the answer's Retry-After, as a client
// should: such an attempt was not evaluated and counts towards nothing. It
// gives up after a minute and returns the last answer.
func retryBusy(send func() (int, []byte)) (int, []byte) {
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		status, body := send()
		if status != http.StatusServiceUnavailable || !bytes.Contains(body, []byte(`"error":"busy"`)) || time.Now().After(deadline) {
			return status, body
		}
	}
}

// do sends one request; token may be empty. A busy answer to a login is
// retried (see retryBusy).
func do(t *testing.T, method, u, token string, body any) response {
	t.Helper()
	var j []byte
	switch b := body.(type) {
	case nil:
	case string:
		j = []byte(b)
	default:
		var err error
		if j, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	var r response
	retryBusy(func() (int, []byte) {
		r = doOnce(t, method, u, token, body, j)
		return r.Status, r.Body
	})
	return r
}

func doOnce(t *testing.T, method, u, token string, body any, j []byte) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	record(t, req, body, resp, b)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// loginBody is the login answer.
type loginBody struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	User      struct {
		ID       string `json:"id"`
		Username string `json:"username"`
		DeviceID string `json:"deviceId"`
		IsAdmin  bool   `json:"isAdmin"`
	} `json:"user"`
}

// login logs in and fails the test unless it gets 200.
func login(t *testing.T, p *process, device, username, password string) loginBody {
	t.Helper()
	r := do(t, "POST", p.URL()+"/api/auth/login", "", map[string]string{
		"deviceId": device, "username": username, "password": password})
	if r.Status != http.StatusOK {
		t.Fatalf("login %s/%s: %d %s", device, username, r.Status, r.Body)
	}
	var lb loginBody
	r.JSON(t, &lb)
	return lb
}

// wantError checks an error answer's status and code.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	r.JSON(t, &e)
	if e.Error != code || e.Message == "" {
		t.Fatalf("error body %s, want code %q and a message", r.Body, code)
	}
}
