package main

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
)

// helpTopic is one command or subcommand: what --help prints for it. Its
// flags are also the ones the command parses, so that the help and the
// parser cannot disagree.
type helpTopic struct {
	usage string // the command line, after "proxy "
	about string // what it does, for a person
	flags func(fs *flag.FlagSet, f *accountFlags)
}

// helpTopics holds every command and subcommand, by its words ("user add").
var helpTopics = map[string]helpTopic{
	"serve": {usage: "[serve]", about: `Serves the HTTP API on LISTEN_ADDR and metrics on METRICS_ADDR, with the
settings below (proxy --help lists them). This is what proxy does without a
command. SIGTERM or Ctrl-C drains in-flight requests, then exits.`},
	"migrate": {usage: "migrate [up|down|status]", about: `Applies pending migrations (up, the default), rolls back the newest one
(down), or lists each migration and whether it is applied (status), on the
store that DATABASE_URL (or DATA_DIR) names.`},
	"migrate up":     {usage: "migrate up", about: "Applies every pending migration and prints how many."},
	"migrate down":   {usage: "migrate down", about: "Rolls back the newest applied migration."},
	"migrate status": {usage: "migrate status", about: "Lists every migration with its state and when it was applied."},
	"user": {usage: "user (add|passwd|remove|list|unlock|import) ...", about: `Manages the accounts that log in: a username on a device. proxy user
COMMAND --help says more of each.`},
	"user add": {usage: "user add --device ID --username NAME [--admin]", about: `Adds a user on a device, creating the device if it does not exist. The
password is asked for at a terminal (twice, not shown); otherwise it is the
first line of stdin, so that it never shows in ps or shell history:

  echo 1111 | proxy user add --device VR-DEVICE-002 --username 1111`,
		flags: func(fs *flag.FlagSet, f *accountFlags) {
			deviceAndUser(fs, f)
			fs.BoolVar(&f.admin, "admin", false, "an admin: its sessions can list and end the sessions of its own device")
		}},
	"user passwd": {usage: "user passwd --device ID --username NAME", about: `Sets a user's password and ends every session of that user. The password is
asked for at a terminal (twice, not shown); otherwise it is the first line
of stdin.`, flags: deviceAndUser},
	"user remove": {usage: "user remove --device ID --username NAME", about: "Removes a user and ends every session of that user.", flags: deviceAndUser},
	"user list": {usage: "user list [--device ID]", about: "Lists the users, of one device or of all.", flags: func(fs *flag.FlagSet, f *accountFlags) {
		fs.StringVar(&f.device, "device", "", "only the users of this device (its `ID`)")
	}},
	"user unlock": {usage: "user unlock --device ID --username NAME", about: `Ends a login lockout (and forgets the failed attempts) of an existing
user.`, flags: deviceAndUser},
	"user import": {usage: "user import [--dry-run] [--update] FILE|-", about: `Imports users with the password hashes another system made, from FILE (or
stdin for -): JSON Lines, one user a line,

  {"deviceId": "VR-DEVICE-002", "username": "1111", "passwordHash": "pbkdf2_sha256$...", "admin": false}

(admin is optional). Hashes of Django (pbkdf2_sha256, pbkdf2_sha1, argon2,
bcrypt_sha256, bcrypt, scrypt), bcrypt ($2a$, $2b$, $2y$) and argon2id
($argon2id$) are taken as they are; each user's first login checks the PIN
against it and replaces it with argon2id. All or nothing: one bad line and
nothing is written, every bad line is reported with its number (exit 1).
Devices are created as needed; an existing user is skipped, or replaced
with --update (its sessions end). Prints "imported N, updated M, skipped K".`,
		flags: func(fs *flag.FlagSet, f *accountFlags) {
			fs.BoolVar(&f.dryRun, "dry-run", false, "check everything and say what would be done; write nothing")
			fs.BoolVar(&f.update, "update", false, "replace existing users (hash and admin flag) instead of skipping them")
		}},
	"sessions": {usage: "sessions (list|revoke|cleanup) ...", about: `Lists and ends sessions. proxy sessions COMMAND --help says more of each.`},
	"sessions list": {usage: "sessions list [--device ID]", about: "Lists the live sessions, of one device or of all.", flags: func(fs *flag.FlagSet, f *accountFlags) {
		fs.StringVar(&f.device, "device", "", "only the sessions of this device (its `ID`)")
	}},
	"sessions revoke": {usage: "sessions revoke (--id SESSION_ID | --device ID [--username NAME])", about: `Ends one session, or every session of a device (a lost headset), or of one
user on it. Every replica refuses the tokens from then on.`,
		flags: func(fs *flag.FlagSet, f *accountFlags) {
			fs.StringVar(&f.id, "id", "", "the session to end (`SESSION_ID`, from sessions list)")
			fs.StringVar(&f.device, "device", "", "end every session of this device (its `ID`)")
			fs.StringVar(&f.username, "username", "", "with --device: only the sessions of the user `NAME`")
		}},
	"sessions cleanup": {usage: "sessions cleanup", about: `Deletes expired sessions now and prints how many (serve also does it every
CLEANUP_INTERVAL).`, flags: func(*flag.FlagSet, *accountFlags) {}},
	"events": {usage: "events list ...", about: `Reads the audit trail: every login, failed login, lockout, refresh, logout,
revocation and account change, written with the change it records.`},
	"events list": {usage: "events list [--device ID] [--username NAME] [--type T] [--since DURATION|TIME] [--json]",
		about: `Lists audit events, oldest first. Types: user_added, user_removed,
password_changed, user_imported, login, login_failed, lockout, unlock,
refresh, refresh_reused, logout, revoke, device_approved, device_denied.
Each event names its time, device, username, session, who acted (the user,
an admin's username, cli or system), a reason and the client's address.
Events are kept for AUDIT_RETENTION.`,
		flags: func(fs *flag.FlagSet, _ *accountFlags) { defineEventsFlags(fs, &eventsFlags{}) }},
	"version":         {usage: "version", about: "Prints the version this program was built from."},
	"help":            {usage: "help [COMMAND]", about: "Prints the commands and settings, or what one command does."},
	hashWorkerCommand: {usage: hashWorkerCommand, about: "Internal: serve starts these to hash passwords, talking over stdin and stdout."},
}

// wantsHelp reports whether args ask for help: -h or --help anywhere
// before a "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// printHelp writes the help for the command that args name (their leading
// words); no words is the whole program. An unknown command is bad usage.
func printHelp(w io.Writer, args []string) error {
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	if len(words) > 0 && words[0] == "help" && (len(words) > 1 || !wantsHelp(args)) {
		words = words[1:] // proxy help user add; proxy help alone is proxy --help
	}
	if len(words) == 0 {
		writeUsage(w)
		return nil
	}
	// The longest run of words that is a topic; a word after it must not
	// be an unknown subcommand of a topic that has some.
	name, n := "", 0
	for i := range words {
		if _, ok := helpTopics[strings.Join(words[:i+1], " ")]; !ok {
			break
		}
		name, n = strings.Join(words[:i+1], " "), i+1
	}
	if name == "" {
		return usagef("unknown command %q (proxy help lists the commands)", words[0])
	}
	if n < len(words) && len(subtopics(name)) > 0 {
		return usagef("unknown command %s %s (proxy %s --help lists them)", name, words[n], name)
	}
	t := helpTopics[name]
	fmt.Fprintf(w, "usage: proxy %s\n\n%s\n", t.usage, t.about)
	if subs := subtopics(name); len(subs) > 0 {
		fmt.Fprintln(w, "\ncommands:")
		for _, s := range subs {
			fmt.Fprintf(w, "  proxy %s\n", helpTopics[s].usage)
		}
	}
	if t.flags != nil {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		t.flags(fs, &accountFlags{})
		var lines []string
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flag.UnquoteUsage(f)
			if arg != "" {
				arg = " " + arg
			}
			lines = append(lines, fmt.Sprintf("  --%s%s\t%s", f.Name, arg, usage))
		})
		if len(lines) > 0 {
			fmt.Fprintln(w, "\nflags:")
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, l := range lines {
				fmt.Fprintln(tw, l)
			}
			_ = tw.Flush()
		}
	}
	if name != "version" && name != "help" && name != hashWorkerCommand {
		fmt.Fprintln(w, "\nIt reads its settings from the environment (proxy --help lists them); a command")
		fmt.Fprintln(w, "says on stderr which store it opened: DATABASE_URL, or the embedded store in DATA_DIR.")
	}
	return nil
}

// subtopics are the topics one word below name, sorted.
func subtopics(name string) []string {
	var out []string
	for k := range helpTopics {
		if rest, ok := strings.CutPrefix(k, name+" "); ok && !strings.Contains(rest, " ") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// commandOrder is the order proxy --help lists the commands in.
var commandOrder = []string{
	"serve", "migrate", "user add", "user passwd", "user remove", "user list", "user unlock",
	"sessions list", "sessions revoke", "sessions cleanup", "version", "help", hashWorkerCommand,
}

// writeUsage is proxy --help: every command, then every setting with its
// default, read from the config struct so that none is left out.
func writeUsage(w io.Writer) {
	fmt.Fprintln(w, "proxy: the authsidecar auth proxy. It logs headsets in, checks their sessions and")
	fmt.Fprintln(w, "forwards their requests to UPSTREAM_URL.")
	fmt.Fprintln(w, "\nusage:")
	for _, name := range commandOrder {
		fmt.Fprintf(w, "  proxy %s\n", helpTopics[name].usage)
	}
	fmt.Fprintln(w, "\nEvery command answers --help. Exit status: 0 success, 1 failure, 2 bad usage or a bad setting.")
	fmt.Fprintln(w, "The commands other than serve say on stderr which store they opened.")
	fmt.Fprintln(w, "\nsettings (environment variables):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
	ct := reflect.TypeFor[config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		name := f.Tag.Get("env")
		if name == "" {
			continue
		}
		def, ok := f.Tag.Lookup("envDefault")
		switch {
		case !ok:
			def = "(unset)"
		case def == "":
			def = `""`
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", name, def, f.Tag.Get("help"))
	}
	fmt.Fprintf(tw, "  %s\t%s\t%s\n", "OTEL_*", "(unset)", tracingHelp)
	_ = tw.Flush()
}

// tracingHelp is what --help says of OpenTelemetry's variables, which the
// SDK reads rather than the config struct.
const tracingHelp = "OpenTelemetry tracing, off unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER is set (see README)"
