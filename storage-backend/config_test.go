package main

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

const testDatabaseURL = "postgres://app:s3cret@db.internal:5432/storage"

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(map[string]string{"DATABASE_URL": testDatabaseURL})
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if cfg.ListenAddr != "127.0.0.1:9000" {
		t.Errorf("ListenAddr = %q, want 127.0.0.1:9000 (loopback: the proxy is the only client)", cfg.ListenAddr)
	}
	if cfg.MaxBodyBytes != 1<<20 {
		t.Errorf("MaxBodyBytes = %d, want 1 MiB", cfg.MaxBodyBytes)
	}
	if !cfg.AutoMigrate {
		t.Error("AutoMigrate = false, want true")
	}
	if cfg.level != zapcore.InfoLevel {
		t.Errorf("level = %v, want info", cfg.level)
	}
	if cfg.pool == nil || cfg.pool.ConnConfig.Host != "db.internal" {
		t.Fatalf("pool config = %+v, want one for db.internal", cfg.pool)
	}
	if cfg.pool.ConnConfig.ConnectTimeout != defaultConnectTimeout {
		t.Errorf("ConnectTimeout = %v, want %v", cfg.pool.ConnConfig.ConnectTimeout, defaultConnectTimeout)
	}
}

// Without DATABASE_URL (unset or empty), the embedded store in DATA_DIR
// keeps the records.
func TestLoadConfigEmbedded(t *testing.T) {
	t.Parallel()
	for _, environ := range []map[string]string{{}, {"DATABASE_URL": ""}} {
		cfg, err := loadConfig(environ)
		if err != nil {
			t.Fatalf("loadConfig(%v): %v", environ, err)
		}
		if cfg.pool != nil || cfg.DataDir != "./data" {
			t.Errorf("loadConfig(%v): pool %v, DataDir %q; want no pool and ./data", environ, cfg.pool, cfg.DataDir)
		}
	}
	cfg, err := loadConfig(map[string]string{"DATA_DIR": "/var/lib/storage"})
	if err != nil || cfg.DataDir != "/var/lib/storage" {
		t.Errorf("DATA_DIR set: %q, %v", cfg.DataDir, err)
	}
}

func TestLoadConfigSet(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(map[string]string{
		"DATABASE_URL":   testDatabaseURL + "?connect_timeout=3",
		"LISTEN_ADDR":    ":9100",
		"MAX_BODY_BYTES": "2048",
		"AUTO_MIGRATE":   "false",
		"LOG_LEVEL":      "debug",
	})
	if err != nil {
		t.Fatalf("loadConfig: %v", err)
	}
	if cfg.ListenAddr != ":9100" || cfg.MaxBodyBytes != 2048 || cfg.AutoMigrate || cfg.level != zapcore.DebugLevel {
		t.Errorf("config = %+v", cfg)
	}
	if cfg.pool.ConnConfig.ConnectTimeout != 3*time.Second {
		t.Errorf("ConnectTimeout = %v, want the URL's 3s", cfg.pool.ConnConfig.ConnectTimeout)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		environ map[string]string
		want    string // the whole message, or a part naming the variable
	}{
		{"DATA_DIR blank", map[string]string{"DATA_DIR": "  "},
			"invalid setting DATA_DIR: is empty"},
		{"DATABASE_URL without scheme", map[string]string{"DATABASE_URL": "app@db.internal:5432/storage"},
			"invalid setting DATABASE_URL: "},
		{"DATABASE_URL of another scheme", map[string]string{"DATABASE_URL": "http://db.internal/storage"},
			"invalid setting DATABASE_URL: "},
		{"DATABASE_URL bad port", map[string]string{"DATABASE_URL": "postgres://app:s3cret@db:port/storage"},
			"invalid setting DATABASE_URL: "},
		{"MAX_BODY_BYTES not a number", map[string]string{"DATABASE_URL": testDatabaseURL, "MAX_BODY_BYTES": "abc"},
			`invalid setting MAX_BODY_BYTES: "abc" is not a number`},
		{"MAX_BODY_BYTES with unit", map[string]string{"DATABASE_URL": testDatabaseURL, "MAX_BODY_BYTES": "1MiB"},
			`invalid setting MAX_BODY_BYTES: "1MiB" is not a number`},
		{"MAX_BODY_BYTES zero", map[string]string{"DATABASE_URL": testDatabaseURL, "MAX_BODY_BYTES": "0"},
			`invalid setting MAX_BODY_BYTES: "0" must be greater than 0`},
		{"MAX_BODY_BYTES negative", map[string]string{"DATABASE_URL": testDatabaseURL, "MAX_BODY_BYTES": "-1"},
			`invalid setting MAX_BODY_BYTES: "-1" must be greater than 0`},
		{"DRAIN_DELAY without a unit", map[string]string{"DATABASE_URL": testDatabaseURL, "DRAIN_DELAY": "5"},
			`invalid setting DRAIN_DELAY: "5" is not a duration; write it like 5s or 1m`},
		{"DRAIN_DELAY past the drain deadline", map[string]string{"DATABASE_URL": testDatabaseURL, "DRAIN_DELAY": "1m"},
			`invalid setting DRAIN_DELAY: "1m" must be between 0s and the 20s drain deadline`},
		{"LOG_LEVEL unknown", map[string]string{"DATABASE_URL": testDatabaseURL, "LOG_LEVEL": "verbose"},
			`invalid setting LOG_LEVEL: "verbose" is not one of debug, info, warn, error`},
		{"AUTO_MIGRATE not a bool", map[string]string{"DATABASE_URL": testDatabaseURL, "AUTO_MIGRATE": "maybe"},
			`invalid setting AUTO_MIGRATE: "maybe" is not true or false`},
		{"LISTEN_ADDR without port", map[string]string{"DATABASE_URL": testDatabaseURL, "LISTEN_ADDR": "127.0.0.1"},
			`invalid setting LISTEN_ADDR: "127.0.0.1"`},
		{"LISTEN_ADDR bad port", map[string]string{"DATABASE_URL": testDatabaseURL, "LISTEN_ADDR": ":99999"},
			`invalid setting LISTEN_ADDR: ":99999"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadConfig(tt.environ)
			if err == nil {
				t.Fatal("loadConfig succeeded, want an error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("error shows the database password: %q", msg)
			}
		})
	}
}
