package e2e

// The token and key items of the second security pass, against the real
// proxy: claims of one spelling only, and the generated signing key
// encrypted at rest.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestSecurity2StrictClaimsQuotedExpIsRefused: a token signed with the
// proxy's own key (from SIGNING_KEY_FILE) for a live session, whose exp is
// the same number in quotes, is 401 invalid_token and is not forwarded;
// the same claims with exp as a number are accepted.
func TestSecurity2StrictClaimsQuotedExpIsRefused(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	keyFile, _ := writeKeyFile(t, key)
	up := newRecordingUpstream(t)
	s := newProxyStack(t, up.URL, map[string]string{"SIGNING_KEY_FILE": keyFile})
	s.AddUser(device, "1111", "1111", false)
	genuine := login(t, s.Proxy, device, "1111", "1111").Token
	claims := tokenClaims(t, genuine)
	hdr := map[string]any{"kid": tokenHeader(t, genuine)["kid"]}
	exp, ok := claims["exp"].(float64)
	if !ok {
		t.Fatalf("the proxy's own token has exp %v", claims["exp"])
	}
	get := func(tok string) response {
		return send(t, nil, "GET", s.Proxy.URL()+"/api/storage/k", tok, "", nil)
	}

	if r := get(forge(t, jwt.SigningMethodEdDSA, hdr, claims, key)); r.Status != http.StatusOK || up.hits.Load() != 1 {
		t.Fatalf("the session's claims re-signed with the proxy's key: %d %s; the refusals below would prove nothing", r.Status, r.Body)
	}
	for _, c := range []struct {
		name   string
		claims jwt.MapClaims
	}{
		{"exp quoted", with(claims, "exp", strconv.FormatInt(int64(exp), 10))},
		{"exp quoted, far ahead", with(claims, "exp", "1999999999")},
		{"iat quoted", with(claims, "iat", strconv.FormatInt(int64(claims["iat"].(float64)), 10))},
		{"EXP in capitals instead of exp", with(claims, "exp", nil, "EXP", exp)},
	} {
		r := get(forge(t, jwt.SigningMethodEdDSA, hdr, c.claims, key))
		wantError(t, r, http.StatusUnauthorized, "invalid_token")
		if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q", c.name, h)
		}
	}
	if n := up.hits.Load(); n != 1 {
		t.Fatalf("%d tokens with quoted dates reached the backend", n-1)
	}
	if r := get(genuine); r.Status != http.StatusOK {
		t.Fatalf("the genuine token afterwards: %d %s", r.Status, r.Body)
	}
}

// writeEncryptionKey writes 32 random bytes in base64, as
// `openssl rand -base64 32` does, to a file only its owner reads.
func writeEncryptionKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "signing-key-encryption.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// storedSigningKeys returns the number of rows of signing_keys and the
// first one's private_pem.
func storedSigningKeys(t *testing.T, db string) (int, string) {
	t.Helper()
	var n int
	var pem string
	query(t, db, `SELECT count(*), coalesce(min(private_pem), '') FROM signing_keys`, nil, &n, &pem)
	return n, pem
}

// refusesToStart runs the proxy with the stack's settings changed by set
// (an empty value removes a setting) and wants it to exit 2 before it
// listens, its last line naming variable.
func refusesToStart(t *testing.T, s *stack, set map[string]string, variable string) string {
	t.Helper()
	vars := map[string]string{"LISTEN_ADDR": "127.0.0.1:0"}
	for k, v := range s.proxyEnv {
		vars[k] = v
	}
	for k, v := range set {
		if v == "" {
			delete(vars, k)
		} else {
			vars[k] = v
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, proxyBin)
	cmd.Env = env(vars)
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	// serve reports a fatal error as a JSON log line naming the setting.
	var fatal struct{ Level, Msg, Setting string }
	if err := json.Unmarshal([]byte(last), &fatal); err != nil || fatal.Level != "fatal" || fatal.Setting != variable ||
		!strings.HasPrefix(fatal.Msg, "invalid setting "+variable+": ") {
		t.Fatalf("last line %q does not name %s:\n%s", last, variable, out)
	}
	last = fatal.Msg
	if strings.Contains(string(out), "listening") {
		t.Fatalf("it listened before refusing:\n%s", out)
	}
	return last
}

// TestSecurity2SealedSigningKey: with SIGNING_KEY_ENCRYPTION_KEY_FILE, the
// key the proxy generates is kept in PostgreSQL encrypted: signing_keys holds
// no PRIVATE KEY, and tokens verify across a restart. Started without the
// key file, or with another one, the proxy refuses to start (exit 2, naming
// the variable) and leaves the stored key as it was: it never makes a new
// one, which would log every headset out.
func TestSecurity2SealedSigningKey(t *testing.T) {
	t.Parallel()
	encKey := writeEncryptionKey(t)
	s := newProxyStack(t, noUpstream, map[string]string{"SIGNING_KEY_ENCRYPTION_KEY_FILE": encKey})
	s.AddUser(device, "1111", "1111", false)
	tok := login(t, s.Proxy, device, "1111", "1111").Token
	kid := tokenHeader(t, tok)["kid"]

	n, stored := storedSigningKeys(t, s.DB)
	if n != 1 {
		t.Fatalf("%d rows in signing_keys, want 1", n)
	}
	if strings.Contains(stored, "PRIVATE KEY") || !strings.HasPrefix(stored, "-----BEGIN AUTHSIDECAR SEALED SIGNING KEY-----\n") {
		t.Fatalf("signing_keys holds:\n%s", stored)
	}
	alive := func(p *process, tok string) {
		t.Helper()
		if r := do(t, "GET", p.URL()+"/api/auth/session", tok, nil); r.Status != http.StatusOK {
			t.Fatalf("the token on %s: %d %s", p.Addr, r.Status, r.Body)
		}
	}

	// A restart opens the same key: old tokens verify, new ones carry
	// the same kid.
	s.Proxy.Stop()
	p := s.StartProxy()
	alive(p, tok)
	if again := login(t, p, device, "1111", "1111").Token; tokenHeader(t, again)["kid"] != kid {
		t.Fatalf("after a restart the proxy signs with kid %v, before with %v", tokenHeader(t, again)["kid"], kid)
	}
	if !strings.Contains(p.Logs(), "signing key in the database is encrypted") {
		t.Fatalf("the log does not say the key is encrypted:\n%s", p.Logs())
	}
	p.Stop()

	refusesToStart(t, s, map[string]string{"SIGNING_KEY_ENCRYPTION_KEY_FILE": ""}, "SIGNING_KEY_ENCRYPTION_KEY_FILE")
	if last := refusesToStart(t, s, map[string]string{"SIGNING_KEY_ENCRYPTION_KEY_FILE": writeEncryptionKey(t)},
		"SIGNING_KEY_ENCRYPTION_KEY_FILE"); !strings.Contains(last, "another encryption key") {
		t.Fatalf("with another key: %q does not say the key is another", last)
	}
	if n, now := storedSigningKeys(t, s.DB); n != 1 || now != stored {
		t.Fatalf("the refused starts changed signing_keys: %d rows", n)
	}

	// Given its key again, it starts, and the first token still works.
	alive(s.StartProxy(), tok)
}

// TestSecurity2SealPlaintextKeyIsKept: an install from before the setting
// has its key in the clear. Adding SIGNING_KEY_ENCRYPTION_KEY_FILE keeps that
// key working (no headset is logged out), warns that it is unencrypted and
// how to rotate it, and does not rewrite it behind the operator's back.
func TestSecurity2SealPlaintextKeyIsKept(t *testing.T) {
	t.Parallel()
	s := newProxyStack(t, noUpstream, nil)
	s.AddUser(device, "1111", "1111", false)
	tok := login(t, s.Proxy, device, "1111", "1111").Token
	_, before := storedSigningKeys(t, s.DB)
	if !strings.Contains(before, "PRIVATE KEY") {
		t.Fatalf("without the setting, signing_keys holds:\n%s", before)
	}
	s.Proxy.Stop()

	s.proxyEnv["SIGNING_KEY_ENCRYPTION_KEY_FILE"] = writeEncryptionKey(t)
	p := s.StartProxy()
	if r := do(t, "GET", p.URL()+"/api/auth/session", tok, nil); r.Status != http.StatusOK {
		t.Fatalf("a token of the plaintext key after the setting was added: %d %s", r.Status, r.Body)
	}
	var warned bool
	for _, line := range strings.Split(p.Logs(), "\n") {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "stored unencrypted") &&
			strings.Contains(line, "SIGNING_KEY_FILE") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no warning that the key is stored unencrypted:\n%s", p.Logs())
	}
	if n, after := storedSigningKeys(t, s.DB); n != 1 || after != before {
		t.Fatalf("signing_keys was rewritten: %d rows", n)
	}
}
