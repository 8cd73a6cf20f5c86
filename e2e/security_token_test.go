package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// newKey returns a fresh Ed25519 private key.
func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// keyPEM encodes keys as PKCS#8 "PRIVATE KEY" blocks, in order: what
// `openssl genpkey -algorithm ed25519` writes, concatenated.
func keyPEM(t *testing.T, keys ...ed25519.PrivateKey) string {
	t.Helper()
	var b bytes.Buffer
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// writeKeyFile writes keys to a file only its owner can read, as a key file
// must be, and returns its path and contents.
func writeKeyFile(t *testing.T, keys ...ed25519.PrivateKey) (string, string) {
	t.Helper()
	p := keyPEM(t, keys...)
	f, err := os.CreateTemp(t.TempDir(), "signing-*.pem")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(p); err != nil {
		t.Fatal(err)
	}
	return f.Name(), p
}

type jwksKey map[string]any

// jwks fetches the proxy's public keys.
func jwks(t *testing.T, p *process) []jwksKey {
	t.Helper()
	r := do(t, "GET", p.URL()+"/.well-known/jwks.json", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("jwks: %d %s", r.Status, r.Body)
	}
	var set struct {
		Keys []jwksKey `json:"keys"`
	}
	r.JSON(t, &set)
	for _, k := range set.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Fatalf("the JWKS publishes a private member %q: %s", private, r.Body)
			}
		}
	}
	return set.Keys
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// tokenHeader decodes a token's JOSE header (without checking anything).
func tokenHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	seg, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// tokenClaims decodes a token's claims (without checking anything).
func tokenClaims(t *testing.T, tok string) jwt.MapClaims {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("token claims: %v", err)
	}
	c := jwt.MapClaims{}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// forge signs claims with method and key, with header members added to the
// one the library writes ("alg" and "typ"); a nil member is removed.
func forge(t *testing.T, method jwt.SigningMethod, header map[string]any, claims jwt.MapClaims, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// TestForgedTokensAreRefused sends the RFC 8725 attacks to the real proxy,
// each built on the claims of a live session so that only the attack is
// wrong. A token made the same way with the proxy's own key and nothing
// wrong is accepted, so each refusal is the defence against that attack.
// None is forwarded, none is a 5xx, and no key is ever fetched from a URL
// the token names.
func TestForgedTokensAreRefused(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	keyFile, _ := writeKeyFile(t, key)
	up := newRecordingUpstream(t)
	s := newProxyStack(t, up.URL, map[string]string{"SIGNING_KEY_FILE": keyFile})
	s.AddUser(device, "1111", "1111", false)
	genuine := login(t, s.Proxy, device, "1111", "1111").Token

	keys := jwks(t, s.Proxy)
	if len(keys) != 1 {
		t.Fatalf("jwks: %v", keys)
	}
	kid, _ := keys[0]["kid"].(string)
	pubBytes, err := base64.RawURLEncoding.DecodeString(keys[0]["x"].(string))
	if err != nil || !bytes.Equal(pubBytes, key.Public().(ed25519.PublicKey)) {
		t.Fatalf("jwks x does not match the key file: %v", err)
	}
	if h := tokenHeader(t, genuine); h["alg"] != "EdDSA" || h["kid"] != kid {
		t.Fatalf("token header %v", h)
	}
	claims := tokenClaims(t, genuine)
	hdr := map[string]any{"kid": kid}

	attacker := newKey(t)
	attackerJWK := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(attacker.Public().(ed25519.PublicKey)), "kid": "attacker"}
	var fetched atomic.Int64
	keyServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{attackerJWK}})
	}))
	t.Cleanup(keyServer.Close)

	works := func(tok string) response {
		return send(t, nil, "GET", s.Proxy.URL()+"/api/storage/k", tok, "", nil)
	}
	control := forge(t, jwt.SigningMethodEdDSA, hdr, claims, key)
	if r := works(control); r.Status != http.StatusOK || up.hits.Load() != 1 {
		t.Fatalf("a well-made token signed with the proxy's key was refused (%d %s): the forgeries below prove nothing", r.Status, r.Body)
	}

	now := time.Now()
	none := forge(t, jwt.SigningMethodNone, hdr, claims, jwt.UnsafeAllowNoneSignatureType)
	attacks := []struct{ name, token string }{
		{"alg none", none},
		{"alg none with the real signature", none + strings.Split(genuine, ".")[2]},
		{"HS256 keyed with the public key", forge(t, jwt.SigningMethodHS256, hdr, claims, pubBytes)},
		{"HS256 keyed with the public key's base64", forge(t, jwt.SigningMethodHS256, hdr, claims, []byte(keys[0]["x"].(string)))},
		{"HS256 keyed with the public key's PEM", forge(t, jwt.SigningMethodHS256, hdr, claims, publicPEM(t, pubBytes))},
		{"HS512 keyed with the public key", forge(t, jwt.SigningMethodHS512, hdr, claims, pubBytes)},
		{"foreign Ed25519 key with the proxy's kid", forge(t, jwt.SigningMethodEdDSA, hdr, claims, attacker)},
		{"expired", forge(t, jwt.SigningMethodEdDSA, hdr, with(claims, "iat", now.Add(-2*time.Hour).Unix(), "exp", now.Add(-time.Minute).Unix()), key)},
		{"no exp", forge(t, jwt.SigningMethodEdDSA, hdr, with(claims, "exp", nil), key)},
		{"wrong iss", forge(t, jwt.SigningMethodEdDSA, hdr, with(claims, "iss", "someone-else"), key)},
		{"no iss", forge(t, jwt.SigningMethodEdDSA, hdr, with(claims, "iss", nil), key)},
		{"jku to the attacker's keys", forge(t, jwt.SigningMethodEdDSA, map[string]any{"kid": "attacker", "jku": keyServer.URL}, claims, attacker)},
		{"jku beside the proxy's own kid", forge(t, jwt.SigningMethodEdDSA, map[string]any{"kid": kid, "jku": keyServer.URL}, claims, key)},
		{"x5u to the attacker", forge(t, jwt.SigningMethodEdDSA, map[string]any{"kid": kid, "x5u": keyServer.URL}, claims, key)},
		{"jwk with the attacker's key", forge(t, jwt.SigningMethodEdDSA, map[string]any{"kid": kid, "jwk": attackerJWK}, claims, attacker)},
		{"jwk with the attacker's key and kid", forge(t, jwt.SigningMethodEdDSA, map[string]any{"kid": "attacker", "jwk": attackerJWK}, claims, attacker)},
		{"jwk beside the proxy's own key", forge(t, jwt.SigningMethodEdDSA, map[string]any{"kid": kid, "jwk": attackerJWK}, claims, key)},
		{"kid not loaded", forge(t, jwt.SigningMethodEdDSA, map[string]any{"kid": "../../../dev/null"}, claims, key)},
		{"kid of 10 KB", forge(t, jwt.SigningMethodEdDSA, map[string]any{"kid": strings.Repeat("k", 10<<10)}, claims, key)},
		{"no kid", forge(t, jwt.SigningMethodEdDSA, map[string]any{}, claims, key)},
		{"another session", forge(t, jwt.SigningMethodEdDSA, hdr, with(claims, "sid", "00000000000000000000000000000000"), attacker)},
	}
	for _, a := range attacks {
		r := works(a.token)
		if r.Status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", a.name, r.Status, r.Body)
			continue
		}
		if h := r.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q", a.name, h)
		}
		if sig := a.token[strings.LastIndexByte(a.token, '.')+1:]; sig != "" && strings.Contains(string(r.Body), sig) {
			t.Errorf("%s: the error body quotes the token", a.name)
		}
	}

	// An Authorization header of 100 KB is refused before it is parsed:
	// 431 from the server's header limit (or 401), never a 5xx.
	huge := raw(t, s.Proxy.Addr, "GET /api/storage/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+
		strings.Repeat("a", 100<<10)+"\r\nConnection: close\r\n\r\n")
	if huge.Status != http.StatusRequestHeaderFieldsTooLarge && huge.Status != http.StatusUnauthorized {
		t.Errorf("100 KB Authorization: %d %s", huge.Status, huge.Body)
	}
	// Just under the header limit, over the token limit: 401.
	big := send(t, nil, "GET", s.Proxy.URL()+"/api/storage/k", "", "", http.Header{"Authorization": {"Bearer " + control + strings.Repeat("A", 20<<10)}})
	wantError(t, big, http.StatusUnauthorized, "invalid_token")

	if n := up.hits.Load(); n != 1 {
		t.Fatalf("%d forged requests reached the backend", n-1)
	}
	if n := fetched.Load(); n != 0 {
		t.Fatalf("the proxy fetched a key from a URL in a token %d times", n)
	}
	// The session the forgeries named is untouched.
	if r := works(genuine); r.Status != http.StatusOK {
		t.Fatalf("the genuine token after the attacks: %d %s", r.Status, r.Body)
	}
}

func publicPEM(t *testing.T, pub ed25519.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestKeyRotationKeepsSessions follows a rotation of SIGNING_KEY_FILE: with
// the new key prepended, tokens of the old key still work and new tokens
// carry the new key's kid; the JWKS lists both, public parts only; once the
// old key is removed, its tokens are refused.
func TestKeyRotationKeepsSessions(t *testing.T) {
	t.Parallel()
	oldKey, newKeyPriv := newKey(t), newKey(t)
	dir := t.TempDir()
	write := func(name string, keys ...ed25519.PrivateKey) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(keyPEM(t, keys...)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s := newProxyStack(t, noUpstream, map[string]string{"SIGNING_KEY_FILE": write("old.pem", oldKey)})
	s.AddUser(device, "1111", "1111", false)
	oldTok := login(t, s.Proxy, device, "1111", "1111").Token
	oldKid := tokenHeader(t, oldTok)["kid"]
	if keys := jwks(t, s.Proxy); len(keys) != 1 || keys[0]["kid"] != oldKid {
		t.Fatalf("jwks before rotation: %v (token kid %v)", keys, oldKid)
	}
	alive := func(p *process, tok string) response {
		return do(t, "GET", p.URL()+"/api/auth/session", tok, nil)
	}

	// Step 1: the new key first, the old one still there.
	s.Proxy.Stop()
	s.proxyEnv["SIGNING_KEY_FILE"] = write("both.pem", newKeyPriv, oldKey)
	p := s.StartProxy()
	if r := alive(p, oldTok); r.Status != http.StatusOK {
		t.Fatalf("a token of the old key after rotation: %d %s", r.Status, r.Body)
	}
	newTok := login(t, p, device, "1111", "1111").Token
	newKid := tokenHeader(t, newTok)["kid"]
	if newKid == oldKid || newKid == nil {
		t.Fatalf("a new login is signed with kid %v; the old key's is %v", newKid, oldKid)
	}
	keys := jwks(t, p)
	if len(keys) != 2 || keys[0]["kid"] != newKid || keys[1]["kid"] != oldKid {
		t.Fatalf("jwks during rotation: %v; want new kid %v then old %v", keys, newKid, oldKid)
	}
	for i, k := range []ed25519.PrivateKey{newKeyPriv, oldKey} {
		if keys[i]["x"] != b64(k.Public().(ed25519.PublicKey)) {
			t.Fatalf("jwks key %d is not the file's key %d", i, i)
		}
	}

	// Step 2: the old key removed.
	p.Stop()
	s.proxyEnv["SIGNING_KEY_FILE"] = write("new.pem", newKeyPriv)
	p = s.StartProxy()
	wantError(t, alive(p, oldTok), http.StatusUnauthorized, "invalid_token")
	if r := alive(p, newTok); r.Status != http.StatusOK {
		t.Fatalf("a token of the new key: %d %s", r.Status, r.Body)
	}
	if keys := jwks(t, p); len(keys) != 1 || keys[0]["kid"] != newKid {
		t.Fatalf("jwks after rotation: %v", keys)
	}
}

// TestJWTLibraryIsPatched reads the module versions built into the real
// proxy binary: golang-jwt before v5.2.2 allocates without bound while
// splitting a hostile token (CVE-2025-30204).
func TestJWTLibraryIsPatched(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "version", "-m", proxyBin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "dep" || f[1] != "github.com/golang-jwt/jwt/v5" {
			continue
		}
		var major, minor, patch int
		if _, err := fmt.Sscanf(f[2], "v%d.%d.%d", &major, &minor, &patch); err != nil {
			t.Fatalf("version %q: %v", f[2], err)
		}
		if major != 5 || minor < 2 || (minor == 2 && patch < 2) {
			t.Fatalf("the proxy is built with golang-jwt %s; v5.2.2 or later is required", f[2])
		}
		return
	}
	t.Fatalf("github.com/golang-jwt/jwt/v5 is not in the proxy binary:\n%s", out)
}
