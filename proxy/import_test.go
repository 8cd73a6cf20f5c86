package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/proxy/internal/password/legacytest"
)

// legacyHash is a hash of pin in format, as another implementation made it.
func legacyHash(t *testing.T, format, pin string) string { return legacytest.Of(t, format, pin) }

func importLineOf(device, user, hash string) string {
	return fmt.Sprintf(`{"deviceId": %q, "username": %q, "passwordHash": %q}`, device, user, hash)
}

func TestUserImport(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATA_DIR": t.TempDir()}
	if code, _, stderr := runProxy(t, env, "1111\n", "user", "add", "--device", "HS-1", "--username", "existing"); code != exitOK {
		t.Fatalf("user add: %d %s", code, stderr)
	}
	file := strings.Join([]string{
		importLineOf("HS-1", "ann", legacyHash(t, "django-pbkdf2_sha256", "1234")),
		"",
		importLineOf("HS-1", "existing", legacyHash(t, "django-bcrypt_sha256", "1234")),
		`{"deviceId": "HS-2", "username": "bob", "passwordHash": "` + legacyHash(t, "django-argon2", "1234") + `", "admin": true}`,
	}, "\n")
	path := filepath.Join(t.TempDir(), "users.jsonl")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runProxy(t, env, "", "user", "import", "--dry-run", path)
	if code != exitOK || stdout != "dry run, nothing written: imported 2, updated 0, skipped 1\n" {
		t.Fatalf("dry run: exit %d, %q, %s", code, stdout, stderr)
	}
	if _, out, _ := runProxy(t, env, "", "user", "list"); strings.Contains(out, "ann") {
		t.Fatalf("a dry run wrote users:\n%s", out)
	}
	code, stdout, stderr = runProxy(t, env, file, "user", "import", "-")
	if code != exitOK || stdout != "imported 2, updated 0, skipped 1\n" {
		t.Fatalf("import from stdin: exit %d, %q, %s", code, stdout, stderr)
	}
	_, out, _ := runProxy(t, env, "", "user", "list")
	for _, want := range [][]string{{"HS-1", "ann", "false"}, {"HS-2", "bob", "true"}} {
		if !hasRow(out, want...) {
			t.Errorf("user list has no %q:\n%s", want, out)
		}
	}
	code, stdout, _ = runProxy(t, env, "", "user", "import", "--update", path)
	if code != exitOK || stdout != "imported 0, updated 3, skipped 0\n" {
		t.Fatalf("import --update: exit %d, %q", code, stdout)
	}
}

// TestUserImportIsAllOrNothing: every bad line is reported with its
// number, the exit is 1, and not even the good lines are written.
func TestUserImportIsAllOrNothing(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATA_DIR": t.TempDir()}
	good := legacyHash(t, "django-pbkdf2_sha256", "1234")
	lines := []string{
		importLineOf("HS-1", "ok", good),                                 // 1
		`{"deviceId": "HS-1", "username": "broken"`,                      // 2: bad JSON
		`{"deviceId": "HS-1", "username": "nohash"}`,                     // 3: a missing field
		importLineOf("HS-1", "md5", "md5$salt$abcdef"),                   // 4: an unknown format
		importLineOf("HS-1", "slow", "$2b$31$"+strings.Repeat("a", 53)),  // 5: a work factor out of bounds
		importLineOf("HS-1", "ok", good),                                 // 6: the same user again
		importLineOf("", "x", good),                                      // 7: no device
		`{"deviceId": "HS-1", "username": "typo", "password_hash": "x"}`, // 8: an unknown field
		importLineOf("HS-1", "fine", good),                               // 9
	}
	code, stdout, stderr := runProxy(t, env, strings.Join(lines, "\n")+"\n", "user", "import", "-")
	if code != exitFailure || stdout != "" {
		t.Fatalf("exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	for _, n := range []int{2, 3, 4, 5, 6, 7, 8} {
		if !strings.Contains(stderr, fmt.Sprintf("line %d: ", n)) {
			t.Errorf("line %d not reported:\n%s", n, stderr)
		}
	}
	for _, n := range []int{1, 9} {
		if strings.Contains(stderr, fmt.Sprintf("line %d: ", n)) {
			t.Errorf("good line %d reported:\n%s", n, stderr)
		}
	}
	if strings.Contains(stderr, good) {
		t.Error("the report repeats a password hash")
	}
	if _, out, _ := runProxy(t, env, "", "user", "list"); strings.Contains(out, "HS-1") {
		t.Fatalf("a failed import wrote users:\n%s", out)
	}
	if code, _, _ := runProxy(t, env, "", "user", "import"); code != exitUsage {
		t.Fatalf("no file: exit %d, want 2", code)
	}
}

// hasRow reports whether a table printed by a command has a line whose
// first columns are cols.
func hasRow(table string, cols ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(cols) && strings.Join(f[:len(cols)], " ") == strings.Join(cols, " ") {
			return true
		}
	}
	return false
}
