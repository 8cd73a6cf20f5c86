package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
)

// djangoUsers are users as a Django site stores them: hashes made by a real
// Django's make_password (proxy/internal/password/testdata, made by
// scripts/legacy-hashes.py), one of each format the clinic's installs have.
func djangoUsers(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../proxy/internal/password/testdata/legacy-hashes.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	users := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct{ Format, Password, Hash string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(l.Format, "django-") && l.Password == "1234" && users[l.Format] == "" {
			users[l.Format] = l.Hash
		}
	}
	if len(users) < 5 {
		t.Fatalf("only %d Django formats in the test data", len(users))
	}
	return users
}

// TestDjangoUsersLogInWithTheirOldPINs: a file exported from a Django user
// table imports; those users log in through the proxy with their old PINs
// and write a record; afterwards their hashes are argon2id, and a user who
// never logged in keeps the hash it came with.
func TestDjangoUsersLogInWithTheirOldPINs(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	users := djangoUsers(t)
	var file strings.Builder
	for format, hash := range users {
		fmt.Fprintf(&file, `{"deviceId": "CLINIC-1", "username": %q, "passwordHash": %q}`+"\n", format, hash)
	}
	fmt.Fprintf(&file, `{"deviceId": "CLINIC-1", "username": "idle", "passwordHash": %q}`+"\n", users["django-pbkdf2_sha256"])
	out, code := s.Command(file.String(), "user", "import", "-")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("imported %d, updated 0, skipped 0", len(users)+1)) {
		t.Fatalf("import: exit %d: %s", code, out)
	}
	for format := range users {
		if r := attempt(t, nil, s.Proxy, "CLINIC-1", format, "0000", nil); r.Status != http.StatusUnauthorized {
			t.Fatalf("%s: a wrong PIN: %d %s", format, r.Status, r.Body)
		}
		lb := login(t, s.Proxy, "CLINIC-1", format, "1234")
		r := do(t, "POST", s.Proxy.URL()+"/api/storage", lb.Token, map[string]any{"key": "k-" + format, "data": 1})
		if r.Status != http.StatusCreated {
			t.Fatalf("%s: write: %d %s", format, r.Status, r.Body)
		}
		var hash string
		query(t, s.DB, `SELECT password_hash FROM users WHERE username = $1`, []any{format}, &hash)
		if !strings.HasPrefix(hash, "$argon2id$") {
			t.Errorf("%s: after the first login the hash is %.16s…, want argon2id", format, hash)
		}
		// The upgraded hash is still the same PIN's.
		login(t, s.Proxy, "CLINIC-1", format, "1234")
	}
	var idle string
	query(t, s.DB, `SELECT password_hash FROM users WHERE username = 'idle'`, nil, &idle)
	if idle != users["django-pbkdf2_sha256"] {
		t.Errorf("a user who never logged in: hash %.16s…, want the imported one", idle)
	}
}
