package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/identity"
)

// maxImportLine bounds one line of an import file: a user is a few hundred
// bytes.
const maxImportLine = 64 << 10

// importLine is one line of an import file, as written: pointers, so that
// a missing field is told from an empty one.
type importLine struct {
	DeviceID     *string `json:"deviceId"`
	Username     *string `json:"username"`
	PasswordHash *string `json:"passwordHash"`
	Admin        *bool   `json:"admin"`
}

// userImportCmd is proxy user import [--dry-run] [--update] FILE|-.
func userImportCmd(ctx context.Context, cfg config, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var f accountFlags
	fs := flag.NewFlagSet("user import", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	helpTopics["user import"].flags(fs, &f)
	if err := fs.Parse(args); err != nil {
		return usagef("user import: %v", err)
	}
	if fs.NArg() != 1 {
		return usagef("usage: proxy user import [--dry-run] [--update] FILE|-")
	}
	in := stdin
	if name := fs.Arg(0); name != "-" {
		file, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("user import: %w", err)
		}
		defer file.Close()
		in = file
	}
	lines, bad, err := readImport(in)
	if err != nil {
		return err
	}
	a, err := openForCommand(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	res, err := a.identity(nil).Import(ctx, lines, f.update, f.dryRun)
	var ie *identity.ImportError
	if errors.As(err, &ie) {
		bad = append(bad, ie.Lines...)
	} else if err != nil {
		return err
	}
	if len(bad) > 0 {
		for _, l := range bad {
			fmt.Fprintln(stderr, l.Error())
		}
		return fmt.Errorf("user import: %d bad line(s); nothing was imported", len(bad))
	}
	if f.dryRun {
		fmt.Fprint(stdout, "dry run, nothing written: ")
	}
	fmt.Fprintf(stdout, "imported %d, updated %d, skipped %d\n", res.Imported, res.Updated, res.Skipped)
	return nil
}

// readImport reads JSON Lines of users. A line that is not one JSON object
// of the expected fields is reported in bad, with its number, and the
// reading goes on, so that one run reports every bad line; blank lines are
// skipped. err is for input that cannot be read at all.
func readImport(r io.Reader) (lines []identity.ImportLine, bad []identity.LineError, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxImportLine)
	n := 0
	for sc.Scan() {
		n++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		u, err := parseImportLine(raw)
		if err != nil {
			bad = append(bad, identity.LineError{Line: n, Err: err})
			continue
		}
		lines = append(lines, identity.ImportLine{Line: n, User: u})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("user import: line %d is longer than %d bytes", n+1, maxImportLine)
		}
		return nil, nil, fmt.Errorf("user import: %w", err)
	}
	return lines, bad, nil
}

func parseImportLine(raw []byte) (auth.ImportedUser, error) {
	var l importLine
	dec := json.NewDecoder(bytes.NewReader(raw))
	// A misspelt field ("password_hash") would otherwise be a missing one
	// with a less helpful message, or an admin flag silently dropped.
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return auth.ImportedUser{}, fmt.Errorf("not a JSON object of deviceId, username, passwordHash and admin: %w", err)
	}
	if dec.More() {
		return auth.ImportedUser{}, errors.New("more than one JSON value on the line")
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"deviceId", l.DeviceID}, {"username", l.Username}, {"passwordHash", l.PasswordHash}} {
		if f.v == nil {
			return auth.ImportedUser{}, fmt.Errorf("%s is missing", f.name)
		}
	}
	u := auth.ImportedUser{DeviceID: *l.DeviceID, Username: *l.Username, PasswordHash: *l.PasswordHash}
	if l.Admin != nil {
		u.IsAdmin = *l.Admin
	}
	return u, nil
}
