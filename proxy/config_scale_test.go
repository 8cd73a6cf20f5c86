package main

import (
	"errors"
	"strings"
	"testing"
)

// The settings of the scale and faults issue: each bad value is one
// settingError that names its variable, as for every other setting.
func TestConfigScaleSettings(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(map[string]string{"DATABASE_URL": testDB})
	if err != nil {
		t.Fatal(err)
	}
	if c.listenURL() != testDB {
		t.Errorf("listenURL() = %q, want DATABASE_URL by default", c.listenURL())
	}
	direct := "postgres://u@10.0.0.5:5432/db"
	c, err = loadConfig(map[string]string{"DATABASE_URL": testDB, "DATABASE_LISTEN_URL": direct})
	if err != nil || c.listenURL() != direct {
		t.Errorf("listenURL() = %q, %v; want %q", c.listenURL(), err, direct)
	}

	for _, tc := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"DATABASE_URL": testDB, "DATABASE_LISTEN_URL": "postgres://u:secret@host:notaport/db"}, "DATABASE_LISTEN_URL"},
		{map[string]string{"DATABASE_URL": testDB, "DATABASE_LISTEN_URL": "not a url"}, "DATABASE_LISTEN_URL"},
		{map[string]string{"DATABASE_LISTEN_URL": testDB, "DATA_DIR": t.TempDir()}, "DATABASE_LISTEN_URL"},
		{map[string]string{"DATABASE_URL": testDB, "DATABASE_STATEMENT_TIMEOUT": "5"}, "DATABASE_STATEMENT_TIMEOUT"},
		{map[string]string{"DATABASE_URL": testDB, "DATABASE_STATEMENT_TIMEOUT": "-1s"}, "DATABASE_STATEMENT_TIMEOUT"},
		{map[string]string{"DATABASE_URL": testDB, "SESSION_CHECK_TIMEOUT": "0s"}, "SESSION_CHECK_TIMEOUT"},
		{map[string]string{"DATABASE_URL": testDB, "SESSION_CHECK_TIMEOUT": "2x"}, "SESSION_CHECK_TIMEOUT"},
		{map[string]string{"DATABASE_URL": testDB, "LISTENER_HEALTH_INTERVAL": "0s"}, "LISTENER_HEALTH_INTERVAL"},
	} {
		_, err := loadConfig(tc.env)
		var se *settingError
		if !errors.As(err, &se) || se.Var != tc.name {
			t.Errorf("%v: got %v, want a settingError naming %s", tc.env, err, tc.name)
			continue
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line without the password: %q", err)
		}
	}
}
