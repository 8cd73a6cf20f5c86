package main

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/internal/testkit"
)

// runProxy runs the program as a command line would, with stdin.
func runProxy(t *testing.T, environ map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, environ, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// Every command and subcommand answers --help and -h with exit 0 and its
// own usage, whatever the settings (here a bad one, and no store at all):
// help opens nothing.
func TestEveryCommandAnswersHelp(t *testing.T) {
	t.Parallel()
	environ := map[string]string{"TOKEN_TTL": "24x", "DATA_DIR": ""}
	topics := [][]string{nil}
	for name := range helpTopics {
		topics = append(topics, strings.Fields(name))
	}
	for _, words := range topics {
		for _, flag := range []string{"--help", "-h"} {
			args := append(append([]string{}, words...), flag)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				t.Parallel()
				code, stdout, stderr := runProxy(t, environ, "", args...)
				if code != exitOK || stderr != "" {
					t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
				}
				want := "usage: proxy " + helpTopics[strings.Join(words, " ")].usage + "\n"
				if words == nil {
					want = "proxy user add --device ID --username NAME [--admin]\n"
				}
				if !strings.Contains(stdout, want) {
					t.Fatalf("stdout does not say %q:\n%s", want, stdout)
				}
			})
		}
	}
	// Flags given along with --help are no reason to refuse it.
	if code, stdout, _ := runProxy(t, environ, "", "user", "add", "--device", "D", "--help"); code != exitOK ||
		!strings.Contains(stdout, "--username NAME") {
		t.Fatalf("user add --device D --help: exit %d:\n%s", code, stdout)
	}
	// proxy help COMMAND is proxy COMMAND --help.
	if code, stdout, _ := runProxy(t, environ, "", "help", "sessions", "revoke"); code != exitOK ||
		!strings.HasPrefix(stdout, "usage: proxy sessions revoke") {
		t.Fatalf("help sessions revoke: exit %d:\n%s", code, stdout)
	}
	for _, args := range [][]string{{"frobnicate", "--help"}, {"user", "frob", "--help"}} {
		if code, _, stderr := runProxy(t, environ, "", args...); code != exitUsage || !strings.HasPrefix(stderr, "proxy: unknown command") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and unknown command", args, code, stderr)
		}
	}
}

// Every command the program dispatches has a help topic.
func TestEveryCommandHasHelp(t *testing.T) {
	t.Parallel()
	for name := range commands {
		if _, ok := helpTopics[name]; !ok {
			t.Errorf("command %q has no help topic", name)
		}
	}
	for _, name := range []string{"user", "sessions", "migrate"} {
		if len(subtopics(name)) == 0 {
			t.Errorf("%s lists no subcommands", name)
		}
	}
}

// proxy --help lists every setting with its default and what it means.
func TestHelpListsEverySetting(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runProxy(t, nil, "", "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	ct := reflect.TypeFor[config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		help := f.Tag.Get("help")
		if help == "" {
			t.Errorf("%s has no help tag", name)
			continue
		}
		def, ok := f.Tag.Lookup("envDefault")
		if !ok {
			def = "(unset)"
		}
		found := false
		for line := range strings.SplitSeq(stdout, "\n") {
			if fields := strings.Fields(line); len(fields) > 2 && fields[0] == name && fields[1] == def && strings.Contains(line, help) {
				found = true
			}
		}
		if !found {
			t.Errorf("no line %s %s %s in:\n%s", name, def, help, stdout)
		}
	}
}

// Every command says on stderr which store it opened, and never the
// database password.
func TestCommandsSayWhichStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u, err := url.Parse(testkit.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "s3cret") // trust auth: never asked for
	for _, tc := range []struct {
		name    string
		environ map[string]string
		want    string
	}{
		{"embedded", map[string]string{"DATA_DIR": dir}, "store: SQLite " + filepath.Join(dir, "proxy.db") + "\n"},
		{"postgres", map[string]string{"DATABASE_URL": u.String()}, "store: PostgreSQL " + u.Host + "/" + strings.TrimPrefix(u.Path, "/") + "\n"},
	} {
		for _, args := range [][]string{{"migrate", "status"}, {"user", "list"}, {"sessions", "list"}, {"sessions", "cleanup"}} {
			code, _, stderr := runProxy(t, tc.environ, "", args...)
			if code != exitOK || stderr != tc.want {
				t.Errorf("%s: %q: exit %d, stderr %q; want 0 and %q", tc.name, args, code, stderr, tc.want)
			}
		}
	}
}

// user unlock of a user who does not exist fails as passwd and remove do:
// a typo in the name must not look like success.
func TestUnlockNeedsAnExistingUser(t *testing.T) {
	t.Parallel()
	environ := map[string]string{"DATA_DIR": t.TempDir()}
	if code, _, stderr := runProxy(t, environ, "1111\n", "user", "add", "--device", "D", "--username", "u"); code != exitOK {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	for _, sub := range []string{"unlock", "remove"} {
		code, stdout, stderr := runProxy(t, environ, "", "user", sub, "--device", "D", "--username", "nobody")
		if code != exitFailure || stdout != "" || !strings.HasSuffix(stderr, "proxy: no user nobody on device D\n") {
			t.Errorf("user %s of a missing user: exit %d, stdout %q, stderr %q", sub, code, stdout, stderr)
		}
	}
	code, _, stderr := runProxy(t, environ, "", "user", "unlock", "--device", "OTHER", "--username", "u")
	if code != exitFailure || !strings.HasSuffix(stderr, "proxy: no user u on device OTHER\n") {
		t.Errorf("user unlock on another device: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr := runProxy(t, environ, "", "user", "unlock", "--device", "D", "--username", "u")
	if code != exitOK || stdout != "unlocked u on device D\n" {
		t.Errorf("user unlock: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// Ctrl-C (the context ending) while user add waits for its password on a
// stdin that never ends (not a terminal) ends the command at once.
func TestInterruptWhileReadingStdin(t *testing.T) {
	t.Parallel()
	environ := map[string]string{"DATA_DIR": t.TempDir()}
	never, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"user", "add", "--device", "D", "--username", "u"}, environ, never, &stdout, &stderr)
	if code != exitFailure || stdout.Len() != 0 || stderr.String() != "proxy: aborted\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 1 and aborted", code, stdout.String(), stderr.String())
	}
}
