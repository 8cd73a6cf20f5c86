package testkit

import (
	"net/url"
	"testing"
)

// Role creates a login role of t's own on the test server, with a fresh
// schema it owns as its search_path, and returns a URL that connects to
// the test database as that role; both are dropped when t ends. Tests use
// it where a schema chosen in the URL (see URL) cannot isolate them: a
// connection pooler such as PgBouncer refuses search_path as a startup
// parameter, but keeps a pool per user, whose server connections then log
// in with the role's own search_path. (A role and a schema cost a few
// milliseconds of the server; a database of its own, copied from a
// template, ten times more.)
//
// It needs a server user that may create roles, as the test server's
// postgres is.
func Role(t testing.TB) string {
	t.Helper()
	base := baseURL(t)
	name, password := "t_"+randomHex(t), randomHex(t)

	if err := serverExec(base,
		"CREATE ROLE "+name+" LOGIN PASSWORD '"+password+"'",
		"CREATE SCHEMA "+name+" AUTHORIZATION "+name,
		"ALTER ROLE "+name+" SET search_path = "+name,
	); err != nil {
		t.Fatalf("testkit: role %s: %v", name, err)
	}
	t.Cleanup(func() {
		// A pooler keeps its server connections after the test's own
		// have closed: end them, or they would stay, idle but counted
		// against the server's max_connections, until the pooler's idle
		// timeout.
		if err := serverExec(base,
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '"+name+"'",
			"DROP SCHEMA IF EXISTS "+name+" CASCADE",
			"DROP ROLE IF EXISTS "+name,
		); err != nil {
			t.Errorf("testkit: drop role %s: %v", name, err)
		}
	})
	u := *base
	u.User = url.UserPassword(name, password)
	return u.String()
}
