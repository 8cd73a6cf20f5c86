package keyseal

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

const purpose = "test signing key"

// randomKey returns 32 random bytes that are not all printable (ParseKey
// refuses those as a password); a loop that in practice runs once.
func randomKey(t *testing.T) []byte {
	t.Helper()
	for {
		b := make([]byte, KeySize)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		if !printable(b) {
			return b
		}
	}
}

func parse(t *testing.T, data []byte) *Key {
	t.Helper()
	k, err := ParseKey(data)
	if err != nil {
		t.Fatalf("ParseKey: %v", err)
	}
	return k
}

// secretPEM is what the proxy seals: an Ed25519 key as PKCS#8 PEM.
func secretPEM(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestSealRoundTrip: what Seal makes, Open returns, with the key read in
// any of its three forms; the sealed block is of its own PEM type and holds
// nothing of the secret in the clear.
func TestSealRoundTrip(t *testing.T) {
	t.Parallel()
	raw := randomKey(t)
	forms := map[string][]byte{
		"raw":             raw,
		"hex":             []byte(hex.EncodeToString(raw)),
		"hex with a line": []byte(hex.EncodeToString(raw) + "\n"),
		"base64":          []byte(base64.StdEncoding.EncodeToString(raw) + "\n"),
		"base64 spaced":   []byte("  " + base64.StdEncoding.EncodeToString(raw) + "\r\n"),
	}
	secret := secretPEM(t)
	sealer := parse(t, raw)
	sealed := sealer.Seal(secret, purpose)
	if !IsSealed(sealed) || !bytes.HasPrefix(sealed, []byte("-----BEGIN "+BlockType+"-----\n")) {
		t.Fatalf("sealed block:\n%s", sealed)
	}
	if bytes.Contains(sealed, []byte("PRIVATE KEY")) || bytes.Contains(sealed, secret[40:80]) {
		t.Fatalf("the sealed block shows the secret:\n%s", sealed)
	}
	if got := SealedBy(sealed); got != sealer.ID() || len(got) != 16 {
		t.Fatalf("SealedBy = %q, key id %q", got, sealer.ID())
	}
	for name, data := range forms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			k := parse(t, data)
			if k.ID() != sealer.ID() {
				t.Fatalf("key id %s, want %s: the same key in another form", k.ID(), sealer.ID())
			}
			got, err := k.Open(sealed, purpose)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("Open: %v; got %q", err, got)
			}
		})
	}
	// A fresh nonce each time: the same secret never seals the same way.
	if again := sealer.Seal(secret, purpose); bytes.Equal(again, sealed) {
		t.Fatal("sealing twice gave the same block")
	}
}

// TestOpenWithAnotherKey: a block sealed with one key does not open with
// another, and says so (it is a setting to fix, not damage); naming the
// other key in the header does not help.
func TestOpenWithAnotherKey(t *testing.T) {
	t.Parallel()
	a, b := parse(t, randomKey(t)), parse(t, randomKey(t))
	if a.ID() == b.ID() {
		t.Fatal("two random keys share an id")
	}
	sealed := a.Seal(secretPEM(t), purpose)
	if _, err := b.Open(sealed, purpose); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("Open with another key: %v, want ErrWrongKey", err)
	} else if !strings.Contains(err.Error(), a.ID()) || !strings.Contains(err.Error(), b.ID()) {
		t.Fatalf("error %q does not name both key ids", err)
	}
	relabelled := bytes.Replace(sealed, []byte("Key-Id: "+a.ID()), []byte("Key-Id: "+b.ID()), 1)
	if _, err := b.Open(relabelled, purpose); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open of a block relabelled with this key's id: %v, want ErrDamaged", err)
	}
}

// TestOpenRefusesTamperedBlocks: any change to the ciphertext, the nonce,
// the tag or the headers, and any other purpose, makes Open fail without
// returning a byte of plaintext.
func TestOpenRefusesTamperedBlocks(t *testing.T) {
	t.Parallel()
	k := parse(t, randomKey(t))
	sealed := k.Seal(secretPEM(t), purpose)
	block, _ := pem.Decode(sealed)
	reseal := func(mutate func(b *pem.Block)) []byte {
		c := &pem.Block{Type: block.Type, Headers: map[string]string{}, Bytes: bytes.Clone(block.Bytes)}
		for h, v := range block.Headers {
			c.Headers[h] = v
		}
		mutate(c)
		return pem.EncodeToMemory(c)
	}
	flip := func(i int) func(*pem.Block) {
		return func(b *pem.Block) { b.Bytes[(i+len(b.Bytes))%len(b.Bytes)] ^= 0x01 }
	}
	tests := []struct {
		name    string
		blob    []byte
		purpose string
		want    error
	}{
		{"nonce changed", reseal(flip(0)), purpose, ErrDamaged},
		{"ciphertext changed", reseal(flip(40)), purpose, ErrDamaged},
		{"tag changed", reseal(flip(-1)), purpose, ErrDamaged},
		{"truncated", reseal(func(b *pem.Block) { b.Bytes = b.Bytes[:len(b.Bytes)-1] }), purpose, ErrDamaged},
		{"shorter than a nonce", reseal(func(b *pem.Block) { b.Bytes = b.Bytes[:5] }), purpose, ErrDamaged},
		{"another purpose", sealed, "another purpose", ErrDamaged},
		{"no purpose", sealed, "", ErrDamaged},
		{"another version", reseal(func(b *pem.Block) { b.Headers["Version"] = "2" }), purpose, nil},
		{"an extra header", reseal(func(b *pem.Block) { b.Headers["Purpose"] = purpose }), purpose, ErrNotSealed},
		{"no key id", reseal(func(b *pem.Block) { delete(b.Headers, "Key-Id") }), purpose, ErrNotSealed},
		{"another block type", reseal(func(b *pem.Block) { b.Type = "PRIVATE KEY" }), purpose, ErrNotSealed},
		{"text before it", append([]byte("note\n"), sealed...), purpose, ErrNotSealed},
		{"text after it", append(bytes.Clone(sealed), "note\n"...), purpose, ErrNotSealed},
		{"two blocks", append(bytes.Clone(sealed), sealed...), purpose, ErrNotSealed},
		{"a plain key", secretPEM(t), purpose, ErrNotSealed},
		{"empty", nil, purpose, ErrNotSealed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := k.Open(tt.blob, tt.purpose)
			if err == nil || got != nil {
				t.Fatalf("Open accepted it: %q, %v", got, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
		})
	}
	// The untouched block still opens: each refusal above is its change.
	if _, err := k.Open(reseal(func(*pem.Block) {}), purpose); err != nil {
		t.Fatalf("Open of the block re-encoded unchanged: %v", err)
	}
}

func TestIsSealed(t *testing.T) {
	t.Parallel()
	k := parse(t, randomKey(t))
	if !IsSealed(k.Seal([]byte("x"), purpose)) || !IsSealed(append([]byte("\n"), k.Seal([]byte("x"), purpose)...)) {
		t.Error("a sealed block is not recognised")
	}
	if IsSealed(secretPEM(t)) || IsSealed(nil) || IsSealed([]byte("-----BEGIN AUTHSIDECAR SEALED SIGNING KEYS-----")) {
		t.Error("something else is taken for a sealed block")
	}
}

// TestParseKeyRefuses: anything but 32 random bytes in one of the three
// forms is refused, and the error never quotes the file.
func TestParseKeyRefuses(t *testing.T) {
	t.Parallel()
	raw := randomKey(t)
	password := []byte("correct-horse-battery-staple-123") // 32 printable bytes
	tests := map[string][]byte{
		"empty":                     nil,
		"31 bytes":                  raw[:31],
		"33 bytes":                  append(bytes.Clone(raw), 0),
		"32 bytes and a newline":    append(bytes.Clone(raw), '\n'),
		"a 32-character password":   password,
		"16 bytes in hex":           []byte(hex.EncodeToString(raw[:16])),
		"31 bytes in hex":           []byte(hex.EncodeToString(raw[:31])),
		"33 bytes in hex":           []byte(hex.EncodeToString(append(bytes.Clone(raw), 7))),
		"64 characters, not hex":    []byte(strings.Repeat("zq", 32)),
		"31 bytes in base64":        []byte(base64.StdEncoding.EncodeToString(raw[:31])),
		"base64 without padding":    []byte(base64.RawStdEncoding.EncodeToString(raw)),
		"base64 url alphabet":       []byte(strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff}, 16)))),
		"44 characters, not base64": []byte(strings.Repeat("!", 44)),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			k, err := ParseKey(data)
			if err == nil {
				t.Fatalf("ParseKey accepted it (key id %s)", k.ID())
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || (len(data) > 3 && strings.Contains(msg, string(bytes.TrimSpace(data))[:4])) ||
				strings.Contains(msg, "horse") {
				t.Fatalf("error %q quotes the file or is not one line", msg)
			}
		})
	}
}
