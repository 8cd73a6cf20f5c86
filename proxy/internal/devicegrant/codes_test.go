package devicegrant

import (
	"bytes"
	"strings"
	"testing"
)

func TestUserCodes(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range 2000 {
		c := newUserCode()
		if len(c) != userCodeLen || strings.Trim(c, UserCodeAlphabet) != "" {
			t.Fatalf("user code %q: want 8 letters of %s", c, UserCodeAlphabet)
		}
		if seen[c] {
			t.Fatalf("user code %q twice in 2000", c)
		}
		seen[c] = true
		for _, r := range c {
			counts[r]++
		}
	}
	// Every letter is used: the alphabet is read whole, not a part of it.
	if len(counts) != len(UserCodeAlphabet) {
		t.Fatalf("%d letters used, want %d: %v", len(counts), len(UserCodeAlphabet), counts)
	}
}

// People type codes as they like: any case, with or without the dash or
// spaces. Anything else is not a code.
func TestNormalizeUserCode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"BCDF-GHJK":   "BCDFGHJK",
		"bcdf-ghjk":   "BCDFGHJK",
		"bcdfghjk":    "BCDFGHJK",
		" BcDf GhJk ": "BCDFGHJK",
	} {
		if got, ok := normalizeUserCode(in); !ok || got != want {
			t.Errorf("normalize %q = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "BCDF-GHJ", "BCDF-GHJKL", "BCDF-GHJA", "BCDF-GHJ1", "BCDF-GHJÄ", strings.Repeat("B", 40)} {
		if got, ok := normalizeUserCode(in); ok {
			t.Errorf("normalize %q = %q; want refused", in, got)
		}
	}
	if got := FormatUserCode("BCDFGHJK"); got != "BCDF-GHJK" {
		t.Errorf("format = %q", got)
	}
}

// Only the device code opens what was sealed to its public key, and only
// for the request it was sealed for.
func TestSealOpen(t *testing.T) {
	t.Parallel()
	code := newDeviceCode()
	if len(code) != 43 {
		t.Fatalf("device code %q: %d characters, want 43 (256 bits)", code, len(code))
	}
	pub, err := publicKeyFor(code)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(`{"token":"a token"}`)
	sealed, err := seal(pub, "req-1", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("a token")) {
		t.Fatal("the sealed token shows the token")
	}
	got, err := open(code, "req-1", sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open = %q, %v", got, err)
	}
	if _, err := open(newDeviceCode(), "req-1", sealed); err == nil {
		t.Fatal("another device code opened the sealed token")
	}
	if _, err := open(code, "req-2", sealed); err == nil {
		t.Fatal("the sealed token opened for another request")
	}
}
