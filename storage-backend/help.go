package main

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
)

// helpTopic is what --help prints for one command.
type helpTopic struct {
	usage string // the command line, after "storage-backend "
	about string
}

// helpTopics holds every command and subcommand, by its words.
var helpTopics = map[string]helpTopic{
	"serve": {"[serve]", `Serves the storage API on LISTEN_ADDR with the settings below
(storage-backend --help lists them). This is what storage-backend does
without a command. SIGTERM or Ctrl-C drains in-flight requests, then exits.`},
	"migrate": {"migrate [up|down|status]", `Applies pending migrations (up, the default), rolls back the newest one
(down), or lists each migration's version, name and state (status), on the
store that DATABASE_URL (or DATA_DIR) names. It says on stderr which store
it opened.`},
	"migrate up":     {"migrate up", "Applies every pending migration and prints each one."},
	"migrate down":   {"migrate down", "Rolls back the newest applied migration; with none applied, exits 1."},
	"migrate status": {"migrate status", "Lists every migration with its state and when it was applied."},
	"version":        {"version", "Prints the version this program was built from."},
	"help":           {"help [COMMAND]", "Prints the commands and settings, or what one command does."},
}

// commandOrder is the order storage-backend --help lists the commands in.
var commandOrder = []string{"serve", "migrate", "version", "help"}

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

// printHelp writes the help for the command that args' leading words
// name; none is the whole program. An unknown command is bad usage.
func printHelp(w io.Writer, args []string) error {
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	if len(words) > 0 && words[0] == "help" && (len(words) > 1 || !wantsHelp(args)) {
		words = words[1:] // storage-backend help migrate; help alone is --help
	}
	if len(words) == 0 {
		writeUsage(w)
		return nil
	}
	name := strings.Join(words, " ")
	t, ok := helpTopics[name]
	if !ok && len(words) > 1 {
		name = words[0] // a subcommand help does not know: its command's help says which there are
		t, ok = helpTopics[name]
		if ok && name == "migrate" {
			return fmt.Errorf("unknown migrate command %q; want up, down or status", words[1])
		}
	}
	if !ok {
		return fmt.Errorf("unknown command %q", words[0])
	}
	fmt.Fprintf(w, "usage: storage-backend %s\n\n%s\n", t.usage, t.about)
	if name != "version" && name != "help" {
		fmt.Fprintln(w, "\nIt reads its settings from the environment; storage-backend --help lists them.")
	}
	return nil
}

// writeUsage is storage-backend --help: the commands, then every setting
// with its default, read from the config struct so that none is left out.
func writeUsage(w io.Writer) {
	fmt.Fprintf(w, "storage-backend %s: the plain backend behind the auth proxy. It stores JSON records\n", version)
	fmt.Fprintln(w, "per device and trusts the proxy's X-Auth-* headers, so only the proxy may reach it.")
	fmt.Fprintln(w, "\nusage:")
	for _, name := range commandOrder {
		fmt.Fprintf(w, "  storage-backend %s\n", helpTopics[name].usage)
	}
	fmt.Fprintln(w, "\nEvery command answers --help. Exit status: 0 success, 1 failure, 2 bad usage or a bad setting.")
	fmt.Fprintln(w, "\nsettings (environment variables):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tMEANING")
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
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", name, def, f.Tag.Get("help"))
	}
	// OpenTelemetry's variables are read by its SDK, not the config struct.
	fmt.Fprintf(tw, "  %s\t%s\t%s\n", "OTEL_*", "(unset)",
		"OpenTelemetry tracing, off unless OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER is set (see README)")
	_ = tw.Flush()
}
