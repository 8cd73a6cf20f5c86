// Package legacytest gives tests the password hashes that other
// implementations made (Django's make_password, Python's bcrypt and
// argon2-cffi): testdata/legacy-hashes.jsonl beside the password package,
// written by scripts/legacy-hashes.py. Only tests import it.
package legacytest

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Hash is one hash and the password it was made from.
type Hash struct {
	Format   string `json:"format"`
	Password string `json:"password"`
	Hash     string `json:"hash"`
}

// All returns every committed hash.
func All(t testing.TB) []Hash {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	f, err := os.Open(filepath.Join(filepath.Dir(here), "..", "testdata", "legacy-hashes.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var all []Hash
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var h Hash
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
			t.Fatal(err)
		}
		all = append(all, h)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return all
}

// Of returns the hash of password in format ("django-pbkdf2_sha256", …).
func Of(t testing.TB, format, password string) string {
	t.Helper()
	for _, h := range All(t) {
		if h.Format == format && h.Password == password {
			return h.Hash
		}
	}
	t.Fatalf("no %s hash of %q in the test data", format, password)
	return ""
}
