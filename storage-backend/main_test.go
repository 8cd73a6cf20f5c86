package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testkit"
)

// lockedBuffer is a bytes.Buffer that the program under test and the test
// may use at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func runCmd(t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut lockedBuffer
	code = run(context.Background(), args, environ, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	environ := map[string]string{"DATABASE_URL": testDatabaseURL}
	for _, args := range [][]string{
		{"bogus"},
		{"serve", "now"},
		{"migrate", "sideways"},
		{"migrate", "up", "extra"},
	} {
		code, _, stderr := runCmd(t, environ, args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		if !strings.HasPrefix(stderr, "storage-backend: ") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: stderr = %q, want one line", args, stderr)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runCmd(t, nil, "help")
	if code != exitOK || !strings.Contains(stdout, "migrate [up|down|status]") {
		t.Errorf("help: exit %d, stdout %q", code, stdout)
	}
}

// Every command and subcommand answers --help and -h with exit 0 and its
// own usage, whatever the settings (here a bad one): help opens nothing.
func TestEveryCommandAnswersHelp(t *testing.T) {
	t.Parallel()
	environ := map[string]string{"DRAIN_DELAY": "5", "DATA_DIR": ""}
	topics := [][]string{nil}
	for name := range helpTopics {
		topics = append(topics, strings.Fields(name))
	}
	for _, words := range topics {
		for _, flag := range []string{"--help", "-h"} {
			args := append(append([]string{}, words...), flag)
			code, stdout, stderr := runCmd(t, environ, args...)
			want := "usage: storage-backend " + helpTopics[strings.Join(words, " ")].usage + "\n"
			if words == nil {
				want = "storage-backend migrate [up|down|status]\n"
			}
			if code != exitOK || stderr != "" || !strings.Contains(stdout, want) {
				t.Errorf("%q: exit %d, stderr %q, stdout:\n%s\nwant 0 and %q", args, code, stderr, stdout, want)
			}
		}
	}
	for _, args := range [][]string{{"bogus", "--help"}, {"migrate", "sideways", "--help"}} {
		if code, _, stderr := runCmd(t, environ, args...); code != exitUsage || !strings.Contains(stderr, "unknown") {
			t.Errorf("%q: exit %d, stderr %q; want 2", args, code, stderr)
		}
	}
}

// storage-backend --help lists every setting with its default.
func TestHelpListsEverySetting(t *testing.T) {
	t.Parallel()
	_, stdout, _ := runCmd(t, nil, "--help")
	ct := reflect.TypeFor[config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			continue
		}
		def, ok := f.Tag.Lookup("envDefault")
		if !ok {
			def = "(unset)"
		}
		if f.Tag.Get("help") == "" {
			t.Errorf("%s has no help tag", name)
		}
		found := false
		for line := range strings.SplitSeq(stdout, "\n") {
			if fields := strings.Fields(line); len(fields) > 2 && fields[0] == name && fields[1] == def {
				found = true
			}
		}
		if !found {
			t.Errorf("no line for %s (default %s) in:\n%s", name, def, stdout)
		}
	}
}

// version prints the version the Makefile stamps (main.version), without
// reading any setting.
func TestVersion(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCmd(t, map[string]string{"DRAIN_DELAY": "5"}, "version")
	if code != exitOK || stdout != version+"\n" || stderr != "" {
		t.Errorf("version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, _ := runCmd(t, nil, "version", "extra"); code != exitUsage {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

func TestBadSettingStopsBeforeAnything(t *testing.T) {
	t.Parallel()
	// A DATA_DIR that cannot be a directory (its parent is a file; being
	// root does not help here, unlike with permissions).
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "migrate"} {
		code, stdout, stderr := runCmd(t, map[string]string{"DATA_DIR": filepath.Join(file, "data")}, cmd)
		if code != exitUsage {
			t.Errorf("%s: exit %d, want 2", cmd, code)
		}
		msg := stderr
		if cmd == "serve" {
			msg = "storage-backend: " + fatalLine(t, stderr, "DATA_DIR")
		}
		if !strings.HasPrefix(msg, "storage-backend: invalid setting DATA_DIR: ") || !strings.Contains(msg, "cannot be created") ||
			strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: stderr = %q, want one line naming DATA_DIR", cmd, stderr)
		}
		if stdout != "" {
			t.Errorf("%s: stdout = %q, want nothing", cmd, stdout)
		}
	}
	// DATA_DIR is a file.
	code, _, stderr := runCmd(t, map[string]string{"DATA_DIR": file}, "serve")
	if msg := fatalLine(t, stderr, "DATA_DIR"); code != exitUsage || !strings.HasPrefix(msg, "invalid setting DATA_DIR: ") {
		t.Errorf("DATA_DIR a file: exit %d, stderr %q", code, stderr)
	}

	code, _, stderr = runCmd(t, map[string]string{"DATABASE_URL": testDatabaseURL, "MAX_BODY_BYTES": "abc"})
	if msg := fatalLine(t, stderr, "MAX_BODY_BYTES"); code != exitUsage || msg != "invalid setting MAX_BODY_BYTES: \"abc\" is not a number" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCmd(t, map[string]string{"DATABASE_URL": testDatabaseURL, "MAX_BODY_BYTES": "abc"}, "migrate", "status")
	if code != exitUsage || stderr != "storage-backend: invalid setting MAX_BODY_BYTES: \"abc\" is not a number\n" {
		t.Errorf("migrate: exit %d, stderr %q", code, stderr)
	}
}

// fatalLine checks that stderr is the server's one fatal JSON line,
// naming setting, and returns its message.
func fatalLine(t *testing.T, stderr, setting string) string {
	t.Helper()
	var entry struct{ Level, Time, Msg, Service, Setting string }
	if strings.Count(stderr, "\n") != 1 || json.Unmarshal([]byte(stderr), &entry) != nil {
		t.Fatalf("stderr = %q, want one JSON line", stderr)
	}
	if entry.Level != "fatal" || entry.Time == "" || entry.Service != "storage-backend" || entry.Setting != setting {
		t.Fatalf("fatal line %+v, want level fatal, service storage-backend, setting %s", entry, setting)
	}
	return entry.Msg
}

// testStores give a command test the settings for a database of its own,
// of each kind: every command works the same on either.
var testStores = []struct {
	name    string
	environ func(t *testing.T) map[string]string
}{
	{"postgres", func(t *testing.T) map[string]string {
		return map[string]string{"DATABASE_URL": testkit.URL(t)}
	}},
	{"sqlite", func(t *testing.T) map[string]string {
		return map[string]string{"DATA_DIR": filepath.Join(t.TempDir(), "data")}
	}},
}

// eachStore runs test once per store kind, in parallel subtests, with the
// settings that select it.
func eachStore(t *testing.T, test func(t *testing.T, environ map[string]string)) {
	t.Helper()
	for _, st := range testStores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			test(t, st.environ(t))
		})
	}
}

func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	eachStore(t, testMigrateCommands)
}

func testMigrateCommands(t *testing.T, environ map[string]string) {
	code, stdout, stderr := runCmd(t, environ, "migrate", "status")
	if code != exitOK || !strings.Contains(stdout, "create_storage_records") || !strings.Contains(stdout, "pending") {
		t.Fatalf("status before up: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// stderr says which store the command works on, never with the
	// password; stdout is the command's own output.
	wantStore := "store: SQLite " + filepath.Join(environ["DATA_DIR"], "storage.db") + "\n"
	if environ["DATABASE_URL"] != "" {
		u, err := url.Parse(environ["DATABASE_URL"])
		if err != nil {
			t.Fatal(err)
		}
		wantStore = "store: PostgreSQL " + u.Host + u.Path + "\n"
	}
	if stderr != wantStore || strings.HasPrefix(stdout, "store:") {
		t.Errorf("status: stderr %q, want %q; stdout %q", stderr, wantStore, stdout)
	}
	code, stdout, stderr = runCmd(t, environ, "migrate", "up")
	if code != exitOK || !strings.Contains(stdout, "applied 1 create_storage_records") || stderr != wantStore {
		t.Fatalf("up: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runCmd(t, environ, "migrate")
	if code != exitOK || !strings.Contains(stdout, "no pending migrations") {
		t.Fatalf("second up: exit %d, stdout %q", code, stdout)
	}
	code, stdout, _ = runCmd(t, environ, "migrate", "status")
	if code != exitOK || strings.Contains(stdout, "pending") || !strings.Contains(stdout, "applied") {
		t.Fatalf("status after up: exit %d, stdout %q", code, stdout)
	}
	code, stdout, _ = runCmd(t, environ, "migrate", "down")
	if code != exitOK || !strings.Contains(stdout, "rolled back 1 create_storage_records") {
		t.Fatalf("down: exit %d, stdout %q", code, stdout)
	}
	code, _, stderr = runCmd(t, environ, "migrate", "down")
	if code != exitFailure || !strings.HasPrefix(stderr, wantStore) || !strings.Contains(stderr, "nothing to roll back") ||
		strings.Count(stderr, "\n") != 2 {
		t.Fatalf("down with nothing applied: exit %d, stderr %q", code, stderr)
	}
}

func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: refused at once.
	environ := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/test?connect_timeout=2"}
	code, _, stderr := runCmd(t, environ, "migrate", "status")
	if code != exitFailure || !strings.HasPrefix(stderr, "storage-backend: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("exit %d, stderr %q; want 1 and one line", code, stderr)
	}
}

// TestServe runs the real serve command: it migrates, listens, answers, and
// on the signal (here: ctx canceled) stops with exit 0.
func TestServe(t *testing.T) {
	t.Parallel()
	eachStore(t, testServe)
}

func testServe(t *testing.T, environ map[string]string) {
	environ["LISTEN_ADDR"] = "127.0.0.1:0"
	environ["LOG_LEVEL"] = "debug"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, nil, environ, &stdout, &stderr) }()

	addr := waitForListening(t, &stderr, exited)
	base := "http://" + addr

	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("readyz = %d, want 200 (AUTO_MIGRATE defaults to true)", res.StatusCode)
	}

	req, _ := http.NewRequest("POST", base+"/api/storage", strings.NewReader(`{"key": "test-123", "data": {"a": 1}}`))
	req.Header.Set("X-Auth-Device-Id", "VR-DEVICE-002")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Errorf("POST = %d, want 201", res.StatusCode)
	}

	cancel()
	select {
	case code := <-exited:
		if code != exitOK {
			t.Errorf("exit %d after signal, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop after the signal")
	}
	var storeLine map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(stderr.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %q", line)
		}
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, "store: ") && storeLine == nil {
			storeLine = m
		}
	}
	// The log says which store serves; the embedded one, that it is for one
	// process and that PostgreSQL is the store for several replicas.
	switch {
	case storeLine == nil:
		t.Errorf("no log line names the store; stderr:\n%s", stderr.String())
	case environ["DATABASE_URL"] != "":
		if storeLine["msg"] != "store: PostgreSQL" || storeLine["database"] == nil {
			t.Errorf("store log line = %v", storeLine)
		}
	default:
		note, _ := storeLine["note"].(string)
		if storeLine["msg"] != "store: embedded SQLite" || storeLine["path"] != filepath.Join(environ["DATA_DIR"], "storage.db") ||
			!strings.Contains(note, "one process") || !strings.Contains(note, "PostgreSQL") {
			t.Errorf("store log line = %v", storeLine)
		}
	}
	if stdout.String() != "" {
		t.Errorf("serve wrote to stdout: %q", stdout.String())
	}
}

// The embedded store's directory is created for its owner only, and the
// database file is readable by its owner only.
func TestDataDirModes(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nested", "data")
	code, stdout, stderr := runCmd(t, map[string]string{"DATA_DIR": dir}, "migrate")
	if code != exitOK {
		t.Fatalf("migrate: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "storage.db"): 0o600} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}
	// Nothing but the database (and SQLite's own files) is left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "storage.db") {
			t.Errorf("DATA_DIR holds %s", e.Name())
		}
	}
}

// waitForListening reads the "listening" log line for the bound address.
func waitForListening(t *testing.T, logs *lockedBuffer, exited <-chan int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				return line.Addr
			}
		}
		select {
		case code := <-exited:
			t.Fatalf("serve exited with %d before listening; stderr:\n%s", code, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not log its address; stderr:\n%s", logs.String())
	return ""
}

// Every package says what it is for, so that a newcomer finds their way.
func TestPackagesHaveDocComments(t *testing.T) {
	t.Parallel()
	documented := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		documented[dir] = documented[dir] || f.Doc != nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, ok := range documented {
		if !ok {
			t.Errorf("package in %s has no doc comment", dir)
		}
	}
}

// TestDrainFinishesInFlight: on SIGTERM /readyz turns 503 at once, a request
// that started before (its body still arriving) completes with 201, and the
// program exits 0.
func TestDrainFinishesInFlight(t *testing.T) {
	t.Parallel()
	eachStore(t, testDrainFinishesInFlight)
}

func testDrainFinishesInFlight(t *testing.T, environ map[string]string) {
	environ["LISTEN_ADDR"] = "127.0.0.1:0"
	environ["DRAIN_DELAY"] = "1s"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, nil, environ, &stdout, &stderr) }()
	addr := waitForListening(t, &stderr, exited)

	body := `{"key": "slow", "data": {"a": 1}}`
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A first request on the connection proves that the server has taken
	// it, rather than guessing how long accepting it takes.
	answers := bufio.NewReader(conn)
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	hres, err := http.ReadResponse(answers, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, hres.Body)
	hres.Body.Close()
	head := "POST /api/storage HTTP/1.1\r\nHost: x\r\nX-Auth-Device-Id: VR-1\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head+body[:10]); err != nil {
		t.Fatal(err)
	}

	cancel() // what SIGTERM does
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusServiceUnavailable {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("readyz did not turn 503 after the signal")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := io.WriteString(conn, body[10:]); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(answers, nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("in-flight request: %d, want 201", res.StatusCode)
	}
	select {
	case code := <-exited:
		if code != exitOK {
			t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(25 * time.Second):
		t.Fatal("did not exit within 25 s of the signal")
	}
}
