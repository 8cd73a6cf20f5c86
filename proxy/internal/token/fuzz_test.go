package token

import (
	"strings"
	"testing"
)

// FuzzVerify checks that Verify never panics on hostile input and never
// accepts a token it did not issue: with a fixed key and clock, the only
// string that verifies is the exact token Sign produced. Any other spelling
// of it (re-encoded base64, extra bits, inserted newlines) must be refused.
// The seed corpus runs with every `go test`.
func FuzzVerify(f *testing.F) {
	k := seededKey(1)
	s := newSigner(f, []Key{k}, Options{})
	valid, err := s.Sign(validClaims())
	if err != nil {
		f.Fatal(err)
	}
	hdr := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": k.ID}
	parts := strings.Split(valid, ".")

	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(valid[:len(valid)/2])
	f.Add(valid + ".")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(handToken(f, map[string]any{"alg": "none", "typ": "JWT", "kid": k.ID}, claimsJSON(), nil))
	f.Add(handToken(f, hdr, with(claimsJSON(), "sid", "other"), nil))
	f.Add(handToken(f, with(hdr, "jwk", map[string]any{"kty": "OKP"}), claimsJSON(), edSign(seededKey(2).Private)))
	f.Add("")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJhbGciOiJFZERTQSJ9.e30.")
	f.Add("\x00\xff.\n.\r")
	f.Add(strings.Repeat("A", MaxTokenBytes+1))

	f.Fuzz(func(t *testing.T, raw string) {
		c, err := s.Verify(raw)
		if err != nil {
			if c != (Claims{}) {
				t.Errorf("claims returned with an error: %+v", c)
			}
			return
		}
		if raw != valid {
			t.Fatalf("Verify accepted a token Sign did not produce: %q", raw)
		}
		if c != validClaims() {
			t.Fatalf("claims of the valid token = %+v", c)
		}
	})
}
