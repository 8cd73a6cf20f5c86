package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: what the program reads (tty) and what a
// person types into (keys).
func openPTY(t *testing.T) (keys, tty *os.File) {
	t.Helper()
	keys, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	if err := unix.IoctlSetPointerInt(int(keys.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(keys.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tty.Close() })
	return keys, tty
}

// promptWatcher is the program's stderr: it collects what is written and
// tells the test each time a prompt ends, so that the test types only
// when asked, as a person would.
type promptWatcher struct {
	mu     sync.Mutex
	text   strings.Builder
	prompt chan string
}

func newPromptWatcher() *promptWatcher { return &promptWatcher{prompt: make(chan string, 8)} }

func (w *promptWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.text.Write(p)
	if s := string(p); strings.HasSuffix(s, ": ") {
		w.prompt <- s[strings.LastIndex(s, "\n")+1:]
	}
	return len(p), nil
}

func (w *promptWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.text.String()
}

// termMode is the part of a terminal's state a prompt must give back.
func termMode(t *testing.T, tty *os.File) [3]uint32 {
	t.Helper()
	st, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return [3]uint32{st.Iflag, st.Oflag, st.Lflag}
}

// runAtTerminal runs proxy args with tty as stdin, typing each of typed
// after a prompt.
func runAtTerminal(t *testing.T, environ map[string]string, typed []string, args ...string) (code int, stdout string, stderr *promptWatcher) {
	t.Helper()
	keys, tty := openPTY(t)
	before := termMode(t, tty)
	stderr = newPromptWatcher()
	var out strings.Builder
	done := make(chan int, 1)
	go func() { done <- run(context.Background(), args, environ, tty, &out, stderr) }()
	for _, k := range typed {
		<-stderr.prompt
		if _, err := keys.WriteString(k); err != nil {
			t.Fatal(err)
		}
	}
	code = <-done
	if after := termMode(t, tty); after != before {
		t.Errorf("terminal mode %x after the prompt, want %x as before", after, before)
	}
	if before[2]&unix.ECHO == 0 {
		t.Errorf("the terminal had no echo to begin with")
	}
	return code, out.String(), stderr
}

// At a terminal, user add asks for the password twice, without echo, and
// gives the terminal back as it was.
func TestUserAddPromptsAtATerminal(t *testing.T) {
	t.Parallel()
	environ := map[string]string{"DATA_DIR": t.TempDir()}
	code, stdout, stderr := runAtTerminal(t, environ, []string{"s3cret\r", "s3cret\r"},
		"user", "add", "--device", "D", "--username", "u")
	if code != exitOK || !strings.HasPrefix(stdout, "added user u on device D") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if s := stderr.String(); !strings.Contains(s, "Password for u on D: ") || !strings.Contains(s, "Again: ") || strings.Contains(s, "s3cret") {
		t.Fatalf("stderr %q: want both prompts and no password", s)
	}
	// The password is the one typed.
	code, _, stderr = runAtTerminal(t, environ, []string{"0000\r", "0000\r"}, "user", "passwd", "--device", "D", "--username", "u")
	if code != exitOK {
		t.Fatalf("user passwd: exit %d, stderr %q", code, stderr)
	}
}

// Ctrl-C at the prompt ends the command at once, changing nothing.
func TestCtrlCAtThePromptAborts(t *testing.T) {
	t.Parallel()
	environ := map[string]string{"DATA_DIR": t.TempDir()}
	for _, typed := range [][]string{{"\x03"}, {"s3cret\r", "\x03"}} {
		code, stdout, stderr := runAtTerminal(t, environ, typed, "user", "add", "--device", "D", "--username", "u")
		if code != exitFailure || stdout != "" || !strings.HasSuffix(stderr.String(), "proxy: aborted\n") {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q", typed, code, stdout, stderr)
		}
	}
	code, stdout, _ := runProxy(t, environ, "", "user", "list")
	if code != exitOK || strings.Count(stdout, "\n") != 1 { // the header alone
		t.Fatalf("user list after the aborted adds: exit %d:\n%s", code, stdout)
	}
}

// Two different passwords at the prompt change nothing.
func TestPromptWantsTheSamePasswordTwice(t *testing.T) {
	t.Parallel()
	environ := map[string]string{"DATA_DIR": t.TempDir()}
	code, _, stderr := runAtTerminal(t, environ, []string{"1111\r", "1112\r"}, "user", "add", "--device", "D", "--username", "u")
	if code != exitFailure || !strings.Contains(stderr.String(), "the two passwords differ") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
