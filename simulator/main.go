// Command simulator runs simulated headsets against an authsidecar proxy:
// each logs in, stores records and reads each one back, for a while, and
// at the end every acknowledged write is read back once more. It is meant
// to be run while the proxy is restarted, scaled or redeployed: it backs
// off and retries through connection refused, 502 and 503, and exits 1 if
// any acknowledged write was lost or any operation failed for good.
//
//	go run ./simulator -proxy http://127.0.0.1:8080 -headsets 10 -duration 30s \
//	    -device-prefix SIM -username 1111 -password 1111
//
// The accounts must exist: create them with `proxy user add`, or pass
// -create-users-with /path/to/proxy (with DATABASE_URL set) to have the
// simulator do it. With -device-grant the headsets sign in with the device
// grant instead, and the simulator approves each code with the account's
// username and password. See docs/headsets.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: exit 0 passed, 1 failed, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg         Config
		n           = fs.Int("headsets", 10, "number of simulated headsets (devices <prefix>-1 … <prefix>-N)")
		prefix      = fs.String("device-prefix", "SIM", "device id prefix")
		username    = fs.String("username", "1111", "username on every simulated device")
		password    = fs.String("password", "1111", "password of every simulated account")
		usersFile   = fs.String("users-file", "", "file of `DEVICE USERNAME PASSWORD` lines; replaces -headsets, -device-prefix, -username, -password")
		createWith  = fs.String("create-users-with", "", "path to the proxy binary: run `proxy user add` for each account first (DATABASE_URL from the environment)")
		jsonSummary = fs.Bool("json", false, "print the summary as JSON")
	)
	fs.StringVar(&cfg.ProxyURL, "proxy", "http://127.0.0.1:8080", "proxy base URL")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long headsets keep writing")
	fs.DurationVar(&cfg.Interval, "interval", 100*time.Millisecond, "pause between one headset's write+read pairs (0: back to back)")
	fs.DurationVar(&cfg.RequestTimeout, "timeout", 10*time.Second, "timeout of one request attempt")
	fs.DurationVar(&cfg.VerifyTimeout, "verify-timeout", 30*time.Second, "time allowed for the final read-back, retries included")
	fs.DurationVar(&cfg.BackoffMin, "backoff-min", 50*time.Millisecond, "first wait after a transient error")
	fs.DurationVar(&cfg.BackoffMax, "backoff-max", time.Second, "longest wait between retries")
	fs.BoolVar(&cfg.DeviceGrant, "device-grant", false, "sign in with the device grant (a code approved on the approval page) instead of a password login; the simulator approves each code with the headset's username and password")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "simulator: unexpected arguments %q\n", fs.Args())
		return 2
	}

	if *usersFile != "" {
		f, err := os.Open(*usersFile)
		if err != nil {
			fmt.Fprintf(stderr, "simulator: -users-file: %v\n", err)
			return 2
		}
		cfg.Headsets, err = parseUsers(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "simulator: -users-file %s: %v\n", *usersFile, err)
			return 2
		}
	} else {
		if *n < 1 {
			fmt.Fprintln(stderr, "simulator: -headsets must be at least 1")
			return 2
		}
		cfg.Headsets = numbered(*prefix, *username, *password, *n)
	}

	if *createWith != "" {
		if err := createUsers(ctx, *createWith, cfg.Headsets); err != nil {
			fmt.Fprintf(stderr, "simulator: creating users: %v\n", err)
			return 1
		}
	}

	sum, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "simulator: %v\n", err)
		return 2
	}
	if *jsonSummary {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(sum)
	} else {
		sum.Text(stdout)
	}
	if !sum.Passed {
		return 1
	}
	return 0
}
