package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// errAborted is Ctrl-C (or Ctrl-D) at the password prompt.
var errAborted = errors.New("aborted")

// readPassword gets the password of user add and user passwd. It never
// comes from an argument, where ps and shell history would show it. At a
// terminal it is asked for on stderr, without echo, twice (a typo nobody
// saw would lock the user out); otherwise it is the first line of stdin,
// where a script pipes it. Ctrl-C ends the command at once either way.
func readPassword(ctx context.Context, stdin io.Reader, stderr io.Writer, prompt string) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return promptPassword(f, stderr, prompt)
	}
	line, err := firstLine(ctx, stdin)
	if err != nil {
		return "", err
	}
	if line == "" {
		return "", usagef("the password is read from the first line of stdin, which is empty")
	}
	return line, nil
}

// firstLine reads the first line of r, or gives up when ctx ends: the
// signal handler only ends ctx, and a read from a pipe that never ends
// would otherwise hold the command past Ctrl-C.
func firstLine(ctx context.Context, r io.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		got <- result{line, err}
	}()
	select {
	case res := <-got:
		if res.err != nil && !errors.Is(res.err, io.EOF) {
			return "", fmt.Errorf("read password from stdin: %w", res.err)
		}
		return strings.TrimRight(res.line, "\r\n"), nil
	case <-ctx.Done():
		return "", errAborted
	}
}

// promptPassword asks at the terminal tty, writing the prompts to out. The
// terminal is in raw mode meanwhile: Ctrl-C reaches the prompt as a key
// rather than as a signal (which the program catches to drain a server,
// and which would not stop a blocked read), so it aborts at once; and the
// mode is restored here, in this goroutine, whatever happens.
func promptPassword(tty *os.File, out io.Writer, prompt string) (string, error) {
	fd := int(tty.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return "", fmt.Errorf("password prompt: %w", err)
	}
	defer func() { _ = term.Restore(fd, old) }()
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{tty, out}, "")
	ask := func(p string) (string, error) {
		pw, err := t.ReadPassword(p)
		if errors.Is(err, io.EOF) {
			fmt.Fprint(t, "\n")
			return "", errAborted
		}
		if err != nil {
			return "", fmt.Errorf("password prompt: %w", err)
		}
		return pw, nil
	}
	pw, err := ask(prompt)
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", usagef("the password is empty")
	}
	again, err := ask("Again: ")
	if err != nil {
		return "", err
	}
	if again != pw {
		return "", errors.New("the two passwords differ; nothing was changed")
	}
	return pw, nil
}
