package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The scripts print database URLs (make run-postgres's banner, an error of
// scripts/postgres.sh) only through redact_url, which must leave no
// password in any form PostgreSQL accepts.
func TestScriptsRedactDatabasePasswords(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://app:s3cret@db:5432/x?sslmode=disable":         "postgres://app:xxxxx@db:5432/x?sslmode=disable",
		"postgresql://app:s3%2Fcret@db/x":                         "postgresql://app:xxxxx@db/x",
		"postgres://app@db/x?sslmode=disable&password=s3cret":     "postgres://app@db/x?sslmode=disable&password=xxxxx",
		"postgres://app@db/x?password=s3cret&sslmode=disable":     "postgres://app@db/x?password=xxxxx&sslmode=disable",
		"host=db user=app password=s3cret dbname=x":               "host=db user=app password=xxxxx dbname=x",
		"host=db user=app password='s3 cret' dbname=x":            "host=db user=app password=xxxxx dbname=x",
		"postgres://postgres@127.0.0.1:5432/test?sslmode=disable": "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
	} {
		out, err := exec.Command("bash", "-c", `source ../scripts/lib.sh && redact_url "$1"`, "redact", in).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", in, err, out)
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != want {
			t.Errorf("redact_url %q = %q, want %q", in, got, want)
		}
	}
}
