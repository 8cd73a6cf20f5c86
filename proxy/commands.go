package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/password"
)

// openForCommand opens the app for an operator command: it logs only
// warnings (the command's own output goes to stdout) and does not wait long
// for a database that is down. It says on stderr which store it opened: a
// command run without the settings of the server it is meant for (another
// DATA_DIR, no DATABASE_URL) would otherwise work on an empty store of its
// own without a word.
func openForCommand(ctx context.Context, cfg config, stderr io.Writer) (*app, error) {
	a, err := openApp(ctx, cfg, newLogger(max(cfg.logLevel, zapcore.WarnLevel), stderr), nil, 0)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stderr, "store: %s\n", a.storeName())
	return a, nil
}

func migrateCmd(ctx context.Context, cfg config, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	sub := "up"
	if len(args) > 0 {
		sub = args[0]
	}
	if len(args) > 1 || (sub != "up" && sub != "down" && sub != "status") {
		return usagef("usage: proxy migrate [up|down|status]")
	}
	cfg.AutoMigrate = false // this command is the migration
	a, err := openForCommand(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	switch sub {
	case "up":
		n, err := a.migrator.Up(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "applied %d migration(s)\n", n)
	case "down":
		v, err := a.migrator.Down(ctx)
		if err != nil {
			return err
		}
		if v == 0 {
			fmt.Fprintln(stdout, "no migration to roll back")
		} else {
			fmt.Fprintf(stdout, "rolled back migration %d\n", v)
		}
	case "status":
		st, err := a.migrator.Status(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tNAME\tSTATE\tAPPLIED AT")
		for _, m := range st {
			state, at := "pending", ""
			if m.Applied {
				state, at = "applied", m.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.Version, m.Name, state, at)
		}
		return tw.Flush()
	}
	return nil
}

// accountFlags parses --device, --username and, where allowed, --admin.
type accountFlags struct {
	device, username, id string
	admin                bool
	dryRun, update       bool // user import
}

// parseFlags parses the flags of the subcommand name ("user add"), as its
// help topic defines them.
func parseFlags(name string, args []string) (accountFlags, error) {
	var f accountFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if define := helpTopics[name].flags; define != nil {
		define(fs, &f)
	}
	if err := fs.Parse(args); err != nil {
		return f, usagef("%s: %v", name, err)
	}
	if fs.NArg() > 0 {
		return f, usagef("%s: unexpected argument %q", name, fs.Arg(0))
	}
	return f, nil
}

func deviceAndUser(fs *flag.FlagSet, f *accountFlags) {
	fs.StringVar(&f.device, "device", "", "the device: its `ID`, e.g. VR-DEVICE-002")
	fs.StringVar(&f.username, "username", "", "the user's `NAME` on that device")
}

func requireAccount(cmd string, f accountFlags) error {
	if f.device == "" || f.username == "" {
		return usagef("%s needs --device ID and --username NAME", cmd)
	}
	return nil
}

func userCmd(ctx context.Context, cfg config, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("usage: proxy user (add|passwd|remove|list|unlock|import) ...")
	}
	sub, args := args[0], args[1:]
	if sub == "import" {
		return userImportCmd(ctx, cfg, args, stdin, stdout, stderr)
	}
	var f accountFlags
	var err error
	switch sub {
	case "add", "passwd", "remove", "unlock":
		f, err = parseFlags("user "+sub, args)
		if err == nil {
			err = requireAccount("user "+sub, f)
		}
	case "list":
		f, err = parseFlags("user list", args)
	default:
		return usagef("unknown command user %s (proxy user --help lists them)", sub)
	}
	if err != nil {
		return err
	}
	var pw string
	if sub == "add" || sub == "passwd" {
		prompt := fmt.Sprintf("Password for %s on %s: ", f.username, f.device)
		if pw, err = readPassword(ctx, stdin, stderr, prompt); err != nil {
			return err
		}
	}

	a, err := openForCommand(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	var hasher *password.Hasher // only adding a user or setting a password hashes
	if sub == "add" || sub == "passwd" {
		if hasher, err = a.hasher(false); err != nil {
			return err
		}
	}
	ids := a.identity(hasher)
	switch sub {
	case "add":
		u, err := ids.AddUser(ctx, f.device, f.username, pw, f.admin)
		if errors.Is(err, auth.ErrConflict) {
			return fmt.Errorf("user %s already exists on device %s", f.username, f.device)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added user %s on device %s (id %s, admin %t)\n", u.Username, u.DeviceID, u.ID, u.IsAdmin)
	case "passwd":
		n, err := ids.SetPassword(ctx, f.device, f.username, pw)
		if err != nil {
			return notFoundUser(err, f)
		}
		fmt.Fprintf(stdout, "password changed for %s on device %s; %d session(s) revoked\n", f.username, f.device, n)
	case "remove":
		n, err := ids.RemoveUser(ctx, f.device, f.username)
		if err != nil {
			return notFoundUser(err, f)
		}
		fmt.Fprintf(stdout, "removed user %s from device %s; %d session(s) revoked\n", f.username, f.device, n)
	case "unlock":
		// Unlock of an account that does not exist would succeed (there is
		// nothing to unlock) and hide a typo in the name; the other
		// commands on one user say "no user" too.
		if _, _, err := a.store.UserCredentials(ctx, f.device, f.username); err != nil {
			return notFoundUser(err, f)
		}
		if err := ids.Unlock(ctx, f.device, f.username); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "unlocked %s on device %s\n", f.username, f.device)
	case "list":
		users, err := ids.ListUsers(ctx, f.device)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tUSERNAME\tADMIN\tID\tCREATED")
		for _, u := range users {
			fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", u.DeviceID, u.Username, u.IsAdmin, u.ID, u.CreatedAt.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	}
	return nil
}

func notFoundUser(err error, f accountFlags) error {
	if errors.Is(err, auth.ErrNotFound) {
		return fmt.Errorf("no user %s on device %s", f.username, f.device)
	}
	return err
}

func sessionsCmd(ctx context.Context, cfg config, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("usage: proxy sessions (list|revoke|cleanup) ...")
	}
	sub, args := args[0], args[1:]
	var f accountFlags
	var err error
	switch sub {
	case "list", "cleanup":
		f, err = parseFlags("sessions "+sub, args)
	case "revoke":
		f, err = parseFlags("sessions revoke", args)
		if err == nil && ((f.id == "") == (f.device == "") || (f.id != "" && f.username != "")) {
			err = usagef("usage: proxy sessions revoke (--id SESSION_ID | --device ID [--username NAME])")
		}
	default:
		return usagef("unknown command sessions %s (proxy sessions --help lists them)", sub)
	}
	if err != nil {
		return err
	}

	a, err := openForCommand(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	m := a.sessions(nil) // operator commands issue and verify no tokens
	switch sub {
	case "list":
		list, err := m.List(ctx, f.device)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tDEVICE\tUSERNAME\tADMIN\tCREATED\tEXPIRES\tCLIENT")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%s\n", s.ID, s.DeviceID, s.Username, s.IsAdmin,
				s.CreatedAt.UTC().Format(time.RFC3339), s.ExpiresAt.UTC().Format(time.RFC3339), s.ClientAddr)
		}
		return tw.Flush()
	case "revoke":
		if f.id != "" {
			if err := m.Revoke(ctx, f.id, "", "cli", "proxy sessions revoke"); err != nil {
				if errors.Is(err, auth.ErrNotFound) {
					return fmt.Errorf("no live session %s", f.id)
				}
				return err
			}
			fmt.Fprintln(stdout, "revoked 1 session")
			return nil
		}
		n, err := m.RevokeDevice(ctx, f.device, f.username, "cli", "proxy sessions revoke")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %d session(s)\n", n)
	case "cleanup":
		n, err := m.Cleanup(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %d expired session(s)\n", n)
	}
	return nil
}
