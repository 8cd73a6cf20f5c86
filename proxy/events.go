package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/audit"
	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/gateway"
)

// eventsFlags are the flags of proxy events list.
type eventsFlags struct {
	device, username, typ, since string
	json                         bool
}

func defineEventsFlags(fs *flag.FlagSet, f *eventsFlags) {
	fs.StringVar(&f.device, "device", "", "only the events of this device (its `ID`)")
	fs.StringVar(&f.username, "username", "", "only the events of the user `NAME`")
	fs.StringVar(&f.typ, "type", "", "only events of this `TYPE` (login, logout, revoke, …)")
	fs.StringVar(&f.since, "since", "", "only events since then: a `DURATION` back from now (24h) or an RFC 3339 time")
	fs.BoolVar(&f.json, "json", false, "one JSON object a line, with the fields of the admin API")
}

func eventsCmd(ctx context.Context, cfg config, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return usagef("usage: proxy events list [--device ID] [--username NAME] [--type T] [--since DURATION|TIME] [--json]")
	}
	var f eventsFlags
	fs := flag.NewFlagSet("events list", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defineEventsFlags(fs, &f)
	if err := fs.Parse(args[1:]); err != nil {
		return usagef("events list: %v", err)
	}
	if fs.NArg() > 0 {
		return usagef("events list: unexpected argument %q", fs.Arg(0))
	}
	filter := auth.EventFilter{DeviceID: f.device, Username: f.username, Type: auth.EventType(f.typ)}
	if f.since != "" {
		since, err := gateway.ParseSince(f.since, time.Now())
		if err != nil {
			return usagef("events list: --since: %v", err)
		}
		filter.Since = since
	}
	a, err := openForCommand(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer a.close()
	events, err := audit.New(a.store, cfg.AuditRetention, a.now).List(ctx, filter)
	if err != nil {
		return err
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		for _, ev := range events {
			if err := enc.Encode(gateway.EventJSON(ev)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tTYPE\tDEVICE\tUSERNAME\tSESSION\tBY\tCLIENT\tREASON")
	for _, ev := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.Time.UTC().Format(time.RFC3339), ev.Type, ev.DeviceID,
			ev.Username, ev.SessionID, ev.By, ev.ClientAddr, ev.Reason)
	}
	return tw.Flush()
}
