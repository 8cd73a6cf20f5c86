package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// parseUsers reads a users file: one headset per line, "DEVICE USERNAME
// PASSWORD" separated by spaces, tabs or commas. Blank lines and lines
// starting with # are skipped.
func parseUsers(r io.Reader) ([]Headset, error) {
	var out []Headset
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		if len(fields) != 3 {
			return nil, fmt.Errorf("users file line %d: want DEVICE USERNAME PASSWORD, got %d fields", n, len(fields))
		}
		out = append(out, Headset{DeviceID: fields[0], Username: fields[1], Password: fields[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("users file has no headsets")
	}
	return out, nil
}

// numbered makes n headsets <prefix>-1 … <prefix>-n sharing one username and
// password: each is its own device, so each is its own account.
func numbered(prefix, username, password string, n int) []Headset {
	out := make([]Headset, n)
	for i := range out {
		out[i] = Headset{DeviceID: fmt.Sprintf("%s-%d", prefix, i+1), Username: username, Password: password}
	}
	return out
}

// createUsers makes the accounts with `proxy user add`, the password on
// stdin as the command wants it (never in argv, where ps would show it).
// The command inherits this process's environment, DATABASE_URL included.
// An account left by an earlier run gets its password set with `proxy user
// passwd` instead, so that repeated runs work and the password matches.
func createUsers(ctx context.Context, proxyBin string, hs []Headset) error {
	for _, h := range hs {
		out, err := runProxy(ctx, proxyBin, h.Password, "user", "add", "--device", h.DeviceID, "--username", h.Username)
		if err != nil && strings.Contains(out, "already exists") {
			out, err = runProxy(ctx, proxyBin, h.Password, "user", "passwd", "--device", h.DeviceID, "--username", h.Username)
		}
		if err != nil {
			return fmt.Errorf("%s user add --device %s --username %s: %v: %s", proxyBin, h.DeviceID, h.Username, err, strings.TrimSpace(out))
		}
	}
	return nil
}

func runProxy(ctx context.Context, bin, password string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(password + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
