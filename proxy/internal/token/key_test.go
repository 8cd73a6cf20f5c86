package token

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
)

// TestThumbprintRFC8037 checks the key id against the example of RFC 8037
// Appendix A.3 (key of A.1).
func TestThumbprintRFC8037(t *testing.T) {
	t.Parallel()
	const (
		d    = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
		x    = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
		want = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
	)
	seed, err := base64.RawURLEncoding.DecodeString(d)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := base64.RawURLEncoding.DecodeString(x)
	if err != nil {
		t.Fatal(err)
	}
	if got := thumbprint(pub); got != want {
		t.Errorf("thumbprint(x) = %s, want %s", got, want)
	}
	k := NewKey(ed25519.NewKeyFromSeed(seed))
	if got := b64(publicOf(k.Private)); got != x {
		t.Errorf("public key = %s, want %s", got, x)
	}
	if k.ID != want {
		t.Errorf("NewKey(...).ID = %s, want %s", k.ID, want)
	}
	if again := NewKey(ed25519.NewKeyFromSeed(seed)); again.ID != k.ID {
		t.Errorf("key id not deterministic: %s then %s", k.ID, again.ID)
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID || a.Private.Equal(b.Private) {
		t.Error("two generated keys are the same")
	}
	if a.ID != thumbprint(publicOf(a.Private)) {
		t.Error("generated key's id is not its thumbprint")
	}
}

func mustPEM(t testing.TB, k Key) []byte {
	t.Helper()
	b, err := k.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemOf(t testing.TB, typ string, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParsePEM(t *testing.T) {
	t.Parallel()
	k1, k2 := seededKey(1), seededKey(2)
	p1, p2 := mustPEM(t, k1), mustPEM(t, k2)
	crlf := bytes.ReplaceAll(p1, []byte("\n"), []byte("\r\n"))
	tests := []struct {
		name string
		data []byte
		want []Key
	}{
		{"one key", p1, []Key{k1}},
		{"two keys in order", cat(p1, p2), []Key{k1, k2}},
		{"two keys, other order", cat(p2, p1), []Key{k2, k1}},
		{"blank lines around and between", cat([]byte("\n\n"), p1, []byte("\n  \n"), p2, []byte("\n\n")), []Key{k1, k2}},
		{"CRLF line endings", crlf, []Key{k1}},
		{"no final newline", bytes.TrimRight(p1, "\n"), []Key{k1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePEM(tt.data)
			if err != nil {
				t.Fatalf("ParsePEM: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].ID != tt.want[i].ID || !got[i].Private.Equal(tt.want[i].Private) {
					t.Errorf("key %d: got id %s, want %s", i, got[i].ID, tt.want[i].ID)
				}
			}
		})
	}
}

func TestParsePEMRefuses(t *testing.T) {
	t.Parallel()
	k1 := seededKey(1)
	p1 := mustPEM(t, k1)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPKCS8 := pemOf(t, "PRIVATE KEY", rsaTestKey())
	rsaPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaTestKey())})
	pubDER, _ := x509.MarshalPKIXPublicKey(publicOf(k1.Private))
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	withHeaders := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}})
	badDER := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("not DER at all")})
	noEnd := bytes.Replace(p1, []byte("-----END PRIVATE KEY-----"), nil, 1)
	badBase64 := bytes.Replace(p1, []byte("\n"), []byte("\n!!!!\n"), 2)

	tests := []struct {
		name string
		data []byte
		want string // part of the message
	}{
		{"nothing", nil, "no PEM"},
		{"whitespace", []byte(" \n\t\n"), "no PEM"},
		{"garbage", []byte("hello, world"), "line 1: text outside a PEM block"},
		{"garbage after a key", cat(p1, []byte("trailing junk\n")), "line 4: text outside a PEM block"},
		{"junk between blocks", cat(p1, []byte("# the old key\n"), mustPEM(t, seededKey(2))), "line 4: text outside a PEM block"},
		{"comment before the key", cat([]byte("# signing key\n"), p1), "line 1: text outside a PEM block"},
		{"RSA in PKCS#8", rsaPKCS8, "RSA key, want Ed25519"},
		{"RSA in PKCS#1", rsaPKCS1, `type "RSA PRIVATE KEY", want "PRIVATE KEY"`},
		{"RSA after a good key", cat(p1, rsaPKCS8), "PEM block 2"},
		{"ECDSA", pemOf(t, "PRIVATE KEY", ecKey), "ECDSA key, want Ed25519"},
		{"public key", pubPEM, `type "PUBLIC KEY"`},
		{"PEM headers", withHeaders, "PEM headers"},
		{"not DER", badDER, "not a PKCS#8 private key"},
		{"no END line", noEnd, "no END line"},
		{"END of another block", cat(noEnd, p1), "without a matching END"},
		{"bad base64 body", badBase64, "malformed PEM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			keys, err := ParsePEM(tt.data)
			if err == nil {
				t.Fatalf("ParsePEM accepted it: %d keys", len(keys))
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("err = %q, want it to mention %q", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("err = %q, want one line", msg)
			}
			// No key material: no line of any PEM body may appear.
			for _, line := range strings.Split(string(tt.data), "\n") {
				line = strings.TrimSpace(line)
				if len(line) >= 16 && !strings.HasPrefix(line, "-----") && !strings.HasPrefix(line, "#") &&
					strings.Contains(msg, line) {
					t.Errorf("err = %q contains PEM body line %q", msg, line)
				}
			}
		})
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestMarshalPEMRoundTrip(t *testing.T) {
	t.Parallel()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b := mustPEM(t, k)
	if !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("MarshalPEM wrote %q, want a PRIVATE KEY block", b[:min(len(b), 30)])
	}
	keys, err := ParsePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ID != k.ID || !keys[0].Private.Equal(k.Private) {
		t.Errorf("round trip lost the key")
	}
	// And the key reads the same through a Signer built from the file.
	s := newSigner(t, keys, Options{})
	raw, err := newSigner(t, []Key{k}, Options{}).Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(raw); err != nil {
		t.Errorf("key read back does not verify the original's token: %v", err)
	}
	if _, err := (Key{ID: "x"}).MarshalPEM(); err == nil {
		t.Error("MarshalPEM of an empty key succeeded")
	}
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	keys := []Key{seededKey(1), seededKey(2), seededKey(3)}
	s := newSigner(t, keys, Options{})
	raw := s.JWKS()

	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v\n%s", err, raw)
	}
	if len(set.Keys) != len(keys) {
		t.Fatalf("JWKS has %d keys, want %d", len(set.Keys), len(keys))
	}
	for i, k := range keys {
		got := set.Keys[i]
		want := map[string]any{
			"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
			"kid": k.ID, "x": b64(publicOf(k.Private)),
		}
		if len(got) != len(want) {
			t.Errorf("key %d: members %v, want exactly %v", i, got, want)
		}
		for name, v := range want {
			if got[name] != v {
				t.Errorf("key %d: %s = %v, want %v", i, name, got[name], v)
			}
		}
		if _, ok := got["d"]; ok {
			t.Errorf("key %d: JWKS serves the private part", i)
		}
		if bytes.Contains(raw, []byte(b64(k.Private.Seed()))) {
			t.Errorf("key %d: private seed appears in the JWKS", i)
		}
	}
	// The kid in the JWKS is what a backend matches a token's header against.
	tok, err := s.Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	if decodeHeader(t, tok)["kid"] != set.Keys[0]["kid"] {
		t.Error("token kid is not the first JWKS kid")
	}
	raw[0] = 'X'
	if s.JWKS()[0] != '{' {
		t.Error("JWKS returned the Signer's own buffer")
	}
}
