package testkit

import "testing"

// Database creates an empty database of t's own on the test server and
// returns a URL for it; it is dropped when t ends. Tests use it where a
// schema selected by search_path cannot isolate them: a connection pooler
// such as PgBouncer refuses search_path as a startup parameter, but routes
// each database name to its own pool.
func Database(t testing.TB) string {
	t.Helper()
	base := baseURL(t)
	name := "t_" + randomHex(t)

	if err := serverExec(base, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testkit: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// FORCE: a process the test started may still hold a connection.
		if err := serverExec(base, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testkit: drop database %s: %v", name, err)
		}
	})
	u := *base
	u.Path = "/" + name
	return u.String()
}
