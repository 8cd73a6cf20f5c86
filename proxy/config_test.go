package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/token"
	"github.com/authsidecar/authsidecar/proxy/internal/tracing"
)

const testDB = "postgres://u@127.0.0.1:5432/db"

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(map[string]string{"DATABASE_URL": testDB})
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		ListenAddr: ":8080", UpstreamURL: "http://127.0.0.1:9000", DatabaseURL: testDB,
		TokenTTL: 24 * time.Hour, SessionMaxAge: 168 * time.Hour, RefreshGrace: 10 * time.Second,
		LoginMaxFailures: 5, LoginLockout: time.Minute, AutoMigrate: true, CleanupInterval: 10 * time.Minute,
		LogLevel: "info", MetricsAddr: ":9464", DataDir: "./data", SessionCache: true,
		DatabaseStatementTimeout: 5 * time.Second, SessionCheckTimeout: 2 * time.Second, ListenerHealthInterval: 2 * time.Second,
		GCHeapFloorMiB: 32, AuditRetention: 8760 * time.Hour,
	}
	if c.upstream.String() != "http://127.0.0.1:9000" || c.signingKeys != nil {
		t.Fatalf("parsed upstream %v, keys %v", c.upstream, c.signingKeys)
	}
	if c.tracing.Enabled {
		t.Fatal("tracing on without an OTEL_* setting")
	}
	c.upstream, c.signingKeys, c.tracing = nil, nil, tracing.Settings{}
	c.logLevel = 0
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

// TestMetricsAddrSetEmptyTurnsItOff: env gives an empty value the
// default, but METRICS_ADDR= is how an operator turns the listener off.
func TestMetricsAddrSetEmptyTurnsItOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		environ map[string]string
		want    string
	}{
		{map[string]string{}, ":9464"},
		{map[string]string{"METRICS_ADDR": ""}, ""},
		{map[string]string{"METRICS_ADDR": "  "}, ""},
		{map[string]string{"METRICS_ADDR": "127.0.0.1:9999"}, "127.0.0.1:9999"},
	} {
		tc.environ["DATABASE_URL"] = testDB
		c, err := loadConfig(tc.environ)
		if err != nil {
			t.Fatal(err)
		}
		if c.MetricsAddr != tc.want {
			t.Errorf("METRICS_ADDR %q: MetricsAddr %q, want %q", tc.environ["METRICS_ADDR"], c.MetricsAddr, tc.want)
		}
	}
}

func TestConfigRejectsBadSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Encryption keys of the wrong size or kind: 16 random bytes in
	// base64, and a 32-character password.
	shortKey, passwordKey := filepath.Join(dir, "short.key"), filepath.Join(dir, "password.key")
	if err := os.WriteFile(shortKey, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa7}, 16))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(passwordKey, []byte("correct-horse-battery-staple-123"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, value string }{
		{"TOKEN_TTL", "24x"},
		{"TOKEN_TTL", "0s"},
		{"TOKEN_TTL", "-1h"},
		{"SESSION_MAX_AGE", "1h"}, // shorter than TOKEN_TTL
		{"REFRESH_GRACE", "soon"},
		{"REFRESH_GRACE", "-1s"},
		{"UPSTREAM_URL", "localhost:9000"},
		{"UPSTREAM_URL", "ftp://host/"},
		{"UPSTREAM_URL", "http://"},
		{"DATABASE_URL", "postgres://u:secret@host:notaport/db"},
		{"LISTEN_ADDR", "8080"},
		{"METRICS_ADDR", "nope"},
		{"LOGIN_MAX_FAILURES", "0"},
		{"LOGIN_MAX_FAILURES", "five"},
		{"LOGIN_LOCKOUT", "0"},
		{"LOGIN_LOCKOUT", "2h"},
		{"AUTO_MIGRATE", "perhaps"},
		{"SESSION_CACHE", "sometimes"},
		{"DRAIN_DELAY", "-1s"},
		{"DRAIN_DELAY", "1m"},
		{"CLEANUP_INTERVAL", "0"},
		{"GC_HEAP_FLOOR_MIB", "-1"},
		{"GC_HEAP_FLOOR_MIB", "32MiB"},
		{"GC_HEAP_FLOOR_MIB", "1025"},
		{"PUBLIC_ROUTES", "api/health"},
		{"PUBLIC_ROUTES", "GET  /x,FETCH /y z"},
		{"PUBLIC_ROUTES", "/"},
		{"PUBLIC_ROUTES", "/api/"},
		{"PUBLIC_ROUTES", "/api/auth/login"},
		{"PUBLIC_ROUTES", "POST /api/auth/"},
		{"PUBLIC_ROUTES", "/healthz"},
		{"PUBLIC_ROUTES", "/x,/x"},
		{"PUBLIC_ROUTES", "/{a}/{b}/"},
		{"ADMIN_ROUTES", "/api/admin/{rest...}"},
		{"ADMIN_ROUTES", "/.well-known/"},
		{"ADMIN_ROUTES", "/{bad"},
		{"TRUSTED_PROXIES", "10.0.0.0/33"},
		{"TRUSTED_PROXIES", "lb.internal"},
		{"AUDIT_RETENTION", "-1h"},
		{"AUDIT_RETENTION", "a year"},
		{"LOG_LEVEL", "loud"},
		{"LOG_LEVEL", "fatal"},
		{"SIGNING_KEY_FILE", filepath.Join(dir, "missing.pem")},
		{"SIGNING_KEY_FILE", junk},
		{"SIGNING_KEY_ENCRYPTION_KEY_FILE", filepath.Join(dir, "missing.key")},
		{"SIGNING_KEY_ENCRYPTION_KEY_FILE", dir},
		{"SIGNING_KEY_ENCRYPTION_KEY_FILE", junk},
		{"SIGNING_KEY_ENCRYPTION_KEY_FILE", shortKey},
		{"SIGNING_KEY_ENCRYPTION_KEY_FILE", passwordKey},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			envv := map[string]string{"DATABASE_URL": testDB, tc.name: tc.value}
			_, err := loadConfig(envv)
			var se *settingError
			if !errors.As(err, &se) || se.Var != tc.name {
				t.Fatalf("got %v, want a settingError naming %s", err, tc.name)
			}
			if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "horse") {
				t.Fatalf("error echoes a password: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

// TestConfigEmbeddedStore: without DATABASE_URL the embedded store is used,
// and its DATA_DIR must be usable.
func TestConfigEmbeddedStore(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	c, err := loadConfig(map[string]string{"DATA_DIR": dir})
	if err != nil || c.DatabaseURL != "" {
		t.Fatalf("embedded store: %v", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("DATA_DIR not created 0700: %v %v", fi, err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{" ", filepath.Join(file, "data")} {
		_, err := loadConfig(map[string]string{"DATA_DIR": bad})
		var se *settingError
		if !errors.As(err, &se) || se.Var != "DATA_DIR" {
			t.Errorf("DATA_DIR=%q: got %v, want a settingError naming DATA_DIR", bad, err)
		}
	}
}

func TestConfigReadsSigningKeys(t *testing.T) {
	t.Parallel()
	var pem []byte
	for range 2 {
		k, err := token.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		p, err := k.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		pem = append(pem, p...)
	}
	path := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(map[string]string{"DATABASE_URL": testDB, "SIGNING_KEY_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.signingKeys) != 2 {
		t.Fatalf("%d keys read, want 2", len(c.signingKeys))
	}
}

// TestConfigReadsSigningKeyEncryptionKey: the key file is read at start in
// each of its forms, and the same bytes give the same key whatever the form.
func TestConfigReadsSigningKeyEncryptionKey(t *testing.T) {
	t.Parallel()
	raw := bytes.Repeat([]byte{0x00, 0xff, 0x5a, 0xc3}, 8) // not all printable: random-looking
	dir := t.TempDir()
	var ids []string
	for name, data := range map[string][]byte{
		"raw.key":    raw,
		"hex.key":    []byte(hex.EncodeToString(raw) + "\n"),
		"base64.key": []byte(base64.StdEncoding.EncodeToString(raw) + "\n"),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(map[string]string{"DATABASE_URL": testDB, "SIGNING_KEY_ENCRYPTION_KEY_FILE": path})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.keySeal == nil {
			t.Fatalf("%s: no key read", name)
		}
		ids = append(ids, c.keySeal.ID())
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("one key, three forms, key ids %v", ids)
	}
}

// TestRunExitCodes drives main's run: bad settings and bad usage exit 2 with
// one line on stderr, before anything touches a database.
func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{"bad setting", []string{"migrate", "status"}, map[string]string{"DATABASE_URL": testDB, "TOKEN_TTL": "24x"}, exitUsage},
		{"unknown command", []string{"frobnicate"}, map[string]string{"DATABASE_URL": testDB}, exitUsage},
		{"migrate bad arg", []string{"migrate", "sideways"}, map[string]string{"DATABASE_URL": testDB}, exitUsage},
		{"user add without device", []string{"user", "add", "--username", "u"}, map[string]string{"DATABASE_URL": testDB}, exitUsage},
		{"user add unknown flag", []string{"user", "add", "--device", "d", "--username", "u", "--root"}, map[string]string{"DATABASE_URL": testDB}, exitUsage},
		{"revoke needs id or device", []string{"sessions", "revoke"}, map[string]string{"DATABASE_URL": testDB}, exitUsage},
		{"revoke id and device", []string{"sessions", "revoke", "--id", "x", "--device", "d"}, map[string]string{"DATABASE_URL": testDB}, exitUsage},
		{"version", []string{"version"}, nil, exitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, tc.env, strings.NewReader(""), &stdout, &stderr)
			if code != tc.want {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.want, stderr.String())
			}
			if tc.want == exitUsage && !strings.HasPrefix(stderr.String(), "proxy: ") {
				t.Fatalf("stderr does not start with the program's name: %q", stderr.String())
			}
		})
	}
}

// TestServeFatalErrorIsOneJSONLine: the server's last words are a JSON log
// line like its others, which names a bad setting; the exit codes are
// those of any command.
func TestServeFatalErrorIsOneJSONLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		code    int
		setting string
	}{
		{"bad setting", nil, map[string]string{"DATABASE_URL": testDB, "TOKEN_TTL": "24x"}, exitUsage, "TOKEN_TTL"},
		{"bad setting, serve named", []string{"serve"}, map[string]string{"DATABASE_URL": testDB, "METRICS_ADDR": "nine"}, exitUsage, "METRICS_ADDR"},
		{"database down", nil, map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db?connect_timeout=2", "METRICS_ADDR": ""}, exitFailure, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			// A canceled context: the database-down case gives up at once
			// instead of retrying for a minute.
			ctx, cancel := context.WithCancel(context.Background())
			if tc.code == exitFailure {
				cancel()
			}
			defer cancel()
			code := run(ctx, tc.args, tc.env, strings.NewReader(""), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			var entry struct {
				Level, Msg, Service, Setting, Time string
			}
			// A failure after the logger started logs its own lines first;
			// the fatal one is the last.
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &entry); err != nil {
				t.Fatalf("last line is not JSON: %q", stderr.String())
			}
			if tc.setting != "" && len(lines) != 1 {
				t.Fatalf("a bad setting: %d lines, want 1: %q", len(lines), stderr.String())
			}
			if entry.Level != "fatal" || entry.Service != "proxy" || entry.Time == "" || entry.Msg == "" || entry.Setting != tc.setting ||
				!strings.Contains(entry.Msg, tc.setting) {
				t.Fatalf("fatal line %+v, want level fatal, service proxy, setting %q named in msg", entry, tc.setting)
			}
		})
	}
}

func TestRunFailsWhenDatabaseIsDown(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"user", "list"},
		map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db?connect_timeout=2"}, strings.NewReader(""), &stdout, &stderr)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d", code, exitFailure)
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "proxy: ") {
		t.Fatalf("want one error line, got %q", stderr.String())
	}
}
