package password

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// legacyHash is one line of testdata/legacy-hashes.jsonl, written by
// scripts/legacy-hashes.py with Django, Python's bcrypt and argon2-cffi:
// hashes made by other implementations than the one that verifies them.
type legacyHash struct {
	Format   string `json:"format"`
	Password string `json:"password"`
	Hash     string `json:"hash"`
}

func legacyHashes(t *testing.T) []legacyHash {
	t.Helper()
	f, err := os.Open("testdata/legacy-hashes.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []legacyHash
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var h legacyHash
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		out = append(out, h)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wrong is a password that differs from pw in its first byte, where even
// bcrypt (which ignores what follows byte 72) sees it.
func wrong(pw string) string {
	b := []byte(pw)
	b[0]++
	return string(b)
}

// legacyHasher verifies without resting, so that the many verifications
// here do not wait on each other's shares.
func legacyHasher(t *testing.T) *Hasher {
	t.Helper()
	return newHasher(t, Options{Concurrency: 2, Share: 1, MaxWait: time.Minute})
}

// TestLegacyTestdataCoversEveryFormat guards the generated file: a format
// that the script stopped writing would otherwise go untested unnoticed.
func TestLegacyTestdataCoversEveryFormat(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, h := range legacyHashes(t) {
		seen[h.Format] = true
	}
	for _, f := range []string{
		"django-pbkdf2_sha256", "django-pbkdf2_sha256-default",
		"django-pbkdf2_sha1", "django-argon2", "django-bcrypt_sha256", "django-bcrypt", "django-scrypt",
		"bcrypt-2a", "bcrypt-2b", "bcrypt-2y", "bcrypt-2b-long",
		"argon2id-phc", "argon2id-phc-lanes", "argon2id-phc-owasp",
	} {
		if !seen[f] {
			t.Errorf("testdata has no %s hash", f)
		}
	}
}

func TestLegacyHashesVerify(t *testing.T) {
	t.Parallel()
	h := legacyHasher(t)
	for _, lh := range legacyHashes(t) {
		t.Run(lh.Format+"/"+lh.Password, func(t *testing.T) {
			t.Parallel()
			if err := Check(lh.Hash); err != nil {
				t.Fatalf("Check(%q): %v", lh.Hash, err)
			}
			ctx := context.Background()
			if ok, err := h.Verify(ctx, lh.Password, lh.Hash); err != nil || !ok {
				t.Errorf("right password: ok=%v err=%v", ok, err)
			}
			if ok, err := h.Verify(ctx, wrong(lh.Password), lh.Hash); err != nil || ok {
				t.Errorf("wrong password: ok=%v err=%v", ok, err)
			}
		})
	}
}

// TestLegacyHashesVerifyInWorker: one hash of each format through a worker
// process, the path a server takes. Django's default PBKDF2 cost is left
// to the in-process test: the format is the same as at low cost, and under
// the race detector it takes seconds.
func TestLegacyHashesVerifyInWorker(t *testing.T) {
	t.Parallel()
	h := newWorkerHasher(t, Options{Concurrency: 2, MaxWait: time.Minute})
	seen := map[string]bool{"django-pbkdf2_sha256-default": true}
	for _, lh := range legacyHashes(t) {
		if seen[lh.Format] {
			continue
		}
		seen[lh.Format] = true
		t.Run(lh.Format, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			if ok, err := h.Verify(ctx, lh.Password, lh.Hash); err != nil || !ok {
				t.Errorf("right password: ok=%v err=%v", ok, err)
			}
			if ok, err := h.Verify(ctx, wrong(lh.Password), lh.Hash); err != nil || ok {
				t.Errorf("wrong password: ok=%v err=%v", ok, err)
			}
		})
	}
}

// TestBcryptIgnoresPastByte72: a plain bcrypt hash of a long password
// verifies with its first 72 bytes, as in the system that made it (and
// only with all 72 of them).
func TestBcryptIgnoresPastByte72(t *testing.T) {
	t.Parallel()
	h := legacyHasher(t)
	for _, lh := range legacyHashes(t) {
		if lh.Format != "bcrypt-2b-long" {
			continue
		}
		if ok, err := h.Verify(context.Background(), lh.Password[:72], lh.Hash); err != nil || !ok {
			t.Errorf("first 72 bytes: ok=%v err=%v", ok, err)
		}
		if ok, err := h.Verify(context.Background(), lh.Password[:71], lh.Hash); err != nil || ok {
			t.Errorf("first 71 bytes: ok=%v err=%v", ok, err)
		}
	}
}

// TestWorkerRechecksBounds: a worker refuses an out-of-bounds hash itself
// instead of trusting that the server checked it.
func TestWorkerRechecksBounds(t *testing.T) {
	t.Parallel()
	resp := compute(request{Op: opVerify, Password: "1234", Hash: "$2b$31$" + strings.Repeat("a", 53)})
	if !strings.Contains(resp.Error, ErrMalformedHash.Error()) || resp.OK {
		t.Fatalf("got %+v, want a malformed hash error", resp)
	}
}

func b64(n int) string    { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
func rawB64(n int) string { return base64.RawStdEncoding.EncodeToString(make([]byte, n)) }
func bcryptTail() string  { return strings.Repeat("a", 53) }
func phc(params string) string {
	return "$argon2id$v=19$" + params + "$" + rawB64(16) + "$" + rawB64(32)
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, encoded string
		want          string // "" for valid, else a part of the error
	}{
		// Valid, at the edges of the bounds.
		{"own", phc("m=64,t=1,p=1"), ""},
		{"own at the bounds", phc("m=262144,t=16,p=16"), ""},
		{"django argon2 default", "argon2" + phc("m=102400,t=2,p=8"), ""},
		{"pbkdf2 1 iteration", "pbkdf2_sha256$1$salt$" + b64(32), ""},
		{"pbkdf2 max iterations", "pbkdf2_sha256$2000000$salt$" + b64(32), ""},
		{"pbkdf2_sha1", "pbkdf2_sha1$1000$salt$" + b64(20), ""},
		{"bcrypt 2a cost 4", "$2a$04$" + bcryptTail(), ""},
		{"bcrypt 2y cost 14", "$2y$14$" + bcryptTail(), ""},
		{"django bcrypt", "bcrypt$$2b$12$" + bcryptTail(), ""},
		{"django bcrypt_sha256", "bcrypt_sha256$$2b$12$" + bcryptTail(), ""},
		{"scrypt django default", "scrypt$16384$salt$8$5$" + b64(64), ""},
		{"scrypt max N", "scrypt$131072$salt$8$1$" + b64(64), ""},
		{"scrypt max memory", "scrypt$131072$salt$16$1$" + b64(64), ""},
		{"scrypt max r*p", "scrypt$1024$salt$1$64$" + b64(64), ""},

		// Anything.
		{"empty", "", "empty"},
		{"too long", "pbkdf2_sha256$1000$" + strings.Repeat("s", 600) + "$" + b64(32), "bytes long"},
		{"line break", "pbkdf2_sha256$1000$salt$" + b64(16) + "\n" + b64(16), "printable"},
		{"plain text", "hunter2", "unrecognised format"},
		{"bare hex", "5f4dcc3b5aa765d61d8327deb882cf99", "unrecognised format"},
		{"django md5", "md5$salt$5f4dcc3b5aa765d61d8327deb882cf99", `unrecognised format "md5"`},
		{"django sha1", "sha1$salt$5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8", `unrecognised format "sha1"`},
		{"django unsalted sha1", "sha1$$5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8", `unrecognised format "sha1"`},
		{"sha512crypt", "$6$salt$hash", `unrecognised format "6"`},

		// argon2.
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + rawB64(16) + "$" + rawB64(32), "only argon2id"},
		{"argon2d", "$argon2d$v=19$m=64,t=1,p=1$" + rawB64(16) + "$" + rawB64(32), "only argon2id"},
		{"django argon2i", "argon2$argon2i$v=19$m=64,t=1,p=1$" + rawB64(16) + "$" + rawB64(32), "only argon2id"},
		{"argon2 no version", "$argon2id$m=64,t=1,p=1$" + rawB64(16) + "$" + rawB64(32), "fields"},
		{"argon2 version trailing", "$argon2id$v=19x$m=64,t=1,p=1$" + rawB64(16) + "$" + rawB64(32), "version"},
		{"argon2 version 16", "$argon2id$v=16$m=64,t=1,p=1$" + rawB64(16) + "$" + rawB64(32), "version"},
		{"argon2 memory 0", phc("m=0,t=1,p=1"), "out of range"},
		{"argon2 memory", phc("m=262145,t=1,p=1"), "out of range"},
		{"argon2 time", phc("m=64,t=17,p=1"), "out of range"},
		{"argon2 lanes", phc("m=64,t=1,p=17"), "out of range"},
		{"argon2 lanes overflow", phc("m=64,t=1,p=257"), "parameters"},
		{"argon2 negative", phc("m=-64,t=1,p=1"), "parameters"},
		{"argon2 padded number", phc("m=064,t=1,p=1"), "parameters"},
		{"argon2 trailing", phc("m=64,t=1,p=1,x=1"), "parameters"},
		{"argon2 empty salt", "$argon2id$v=19$m=64,t=1,p=1$$" + rawB64(32), "salt"},
		{"argon2 padded salt", "$argon2id$v=19$m=64,t=1,p=1$" + b64(16) + "$" + rawB64(32), "salt"},
		{"argon2 short key", "$argon2id$v=19$m=64,t=1,p=1$" + rawB64(16) + "$" + rawB64(8), "hash"},
		{"django argon2 bounds", "argon2" + phc("m=999999,t=1,p=1"), "django argon2"},

		// PBKDF2.
		{"pbkdf2 0 iterations", "pbkdf2_sha256$0$salt$" + b64(32), "iterations"},
		{"pbkdf2 too many iterations", "pbkdf2_sha256$2000001$salt$" + b64(32), "iterations"},
		{"pbkdf2 huge iterations", "pbkdf2_sha256$99999999999999999999$salt$" + b64(32), "iterations"},
		{"pbkdf2 negative iterations", "pbkdf2_sha256$-5$salt$" + b64(32), "iterations"},
		{"pbkdf2 signed iterations", "pbkdf2_sha256$+5$salt$" + b64(32), "iterations"},
		{"pbkdf2 padded iterations", "pbkdf2_sha256$01000$salt$" + b64(32), "iterations"},
		{"pbkdf2 empty iterations", "pbkdf2_sha256$$salt$" + b64(32), "iterations"},
		{"pbkdf2 empty salt", "pbkdf2_sha256$1000$$" + b64(32), "empty salt"},
		{"pbkdf2 too few fields", "pbkdf2_sha256$1000$" + b64(32), "3 fields"},
		{"pbkdf2 too many fields", "pbkdf2_sha256$1000$sa$lt$" + b64(32), "5 fields"},
		{"pbkdf2 not base64", "pbkdf2_sha256$1000$salt$!!!!", "base64"},
		{"pbkdf2 unpadded", "pbkdf2_sha256$1000$salt$" + rawB64(32), "base64"},
		{"pbkdf2 empty hash", "pbkdf2_sha256$1000$salt$", "0 bytes"},
		{"pbkdf2_sha256 short hash", "pbkdf2_sha256$1000$salt$" + b64(20), "20 bytes, want 32"},
		{"pbkdf2_sha1 long hash", "pbkdf2_sha1$1000$salt$" + b64(32), "32 bytes, want 20"},

		// bcrypt.
		{"bcrypt cost 3", "$2b$03$" + bcryptTail(), "cost 3 not in 4..14"},
		{"bcrypt cost 15", "$2b$15$" + bcryptTail(), "cost 15 not in 4..14"},
		{"bcrypt cost 31", "$2b$31$" + bcryptTail(), "cost 31"},
		{"bcrypt cost not digits", "$2b$1a$" + bcryptTail(), "two digits"},
		{"bcrypt 2x", "$2x$10$" + bcryptTail(), "version $2x$"},
		{"bcrypt 2", "$2$10$" + bcryptTail(), "not a $2a$"},
		{"bcrypt short", "$2a$10$abcdefghijklmnopqrstuv", "characters"},
		{"bcrypt long", "$2a$10$" + bcryptTail() + "a", "characters"},
		{"bcrypt alphabet", "$2a$10$" + strings.Repeat("+", 53), "bcrypt's base64"},
		{"django bcrypt cost", "bcrypt$$2b$20$" + bcryptTail(), "django bcrypt: cost 20"},
		{"django bcrypt_sha256 cost", "bcrypt_sha256$$2b$03$" + bcryptTail(), "django bcrypt_sha256: cost 3"},
		{"django bcrypt one $", "bcrypt$2b$12$" + bcryptTail(), "django bcrypt: not a $2a$"},

		// scrypt.
		{"scrypt N not a power of two", "scrypt$3000$salt$8$1$" + b64(64), "power of two"},
		{"scrypt N 1", "scrypt$1$salt$8$1$" + b64(64), "power of two"},
		{"scrypt N too big", "scrypt$262144$salt$1$1$" + b64(64), "power of two in 2..131072"},
		{"scrypt r 0", "scrypt$1024$salt$0$1$" + b64(64), "r=0"},
		{"scrypt p 0", "scrypt$1024$salt$8$0$" + b64(64), "p=0"},
		{"scrypt r*p", "scrypt$1024$salt$8$9$" + b64(64), "r·p ≤ 64"},
		{"scrypt huge p", "scrypt$1024$salt$1$999999999$" + b64(64), "r·p ≤ 64"},
		{"scrypt memory", "scrypt$131072$salt$17$1$" + b64(64), "272 MiB"},
		{"scrypt work", "scrypt$131072$salt$8$5$" + b64(64), "N·r·p"},
		{"scrypt not numbers", "scrypt$x$salt$8$1$" + b64(64), "must be numbers"},
		{"scrypt salt first", "scrypt$salt$16384$8$1$" + b64(64), "must be numbers"},
		{"scrypt fields", "scrypt$16384$salt$8$" + b64(64), "5 fields"},
		{"scrypt empty salt", "scrypt$16384$$8$1$" + b64(64), "empty salt"},
		{"scrypt key length", "scrypt$16384$salt$8$1$" + b64(32), "32 bytes, want 64"},
		{"scrypt not base64", "scrypt$16384$salt$8$1$****", "base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Check(tc.encoded)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check(%q): %v, want nil", tc.encoded, err)
			case tc.want == "":
				return
			case !errors.Is(err, ErrMalformedHash):
				t.Fatalf("Check(%q): %v, want ErrMalformedHash", tc.encoded, err)
			case !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Check(%q): %q, want it to say %q", tc.encoded, err, tc.want)
			}
		})
	}
}

// TestCheckDoesNotEchoTheHash: the error goes to an importer's report or a
// log, so it must not carry what may be a password or a crackable hash.
func TestCheckDoesNotEchoTheHash(t *testing.T) {
	t.Parallel()
	for _, enc := range []string{
		"hunter2",
		"correct horse battery staple",
		"5f4dcc3b5aa765d61d8327deb882cf99",
		"md5$salt$5f4dcc3b5aa765d61d8327deb882cf99",
		"pbkdf2_sha256$1000$mysalt$tooshort",
		"$2b$10$" + strings.Repeat("a", 40),
		"$argon2id$v=19$m=64,t=1,p=1$!!!!$" + rawB64(32),
	} {
		err := Check(enc)
		if err == nil {
			t.Fatalf("Check(%q) = nil", enc)
		}
		for _, secret := range []string{"hunter2", "horse", "5f4dcc3b", "mysalt", "tooshort", "aaaaaaaa", "!!!!"} {
			if strings.Contains(enc, secret) && strings.Contains(err.Error(), secret) {
				t.Errorf("Check(%q) = %q: it repeats %q", enc, err, secret)
			}
		}
	}
}

// TestVerifyRefusesOutOfBoundsLegacyHashes: Verify refuses, before taking a
// slot, what Check refuses.
func TestVerifyRefusesOutOfBoundsLegacyHashes(t *testing.T) {
	t.Parallel()
	h := newHasher(t, Options{Concurrency: 1, MaxWait: time.Millisecond})
	w, err := h.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer h.release(w, 0)
	// With the only slot taken, a hash that reached a worker would fail
	// with ErrBusy instead.
	for _, enc := range []string{
		"pbkdf2_sha256$2000001$salt$" + b64(32),
		"$2b$31$" + bcryptTail(),
		"scrypt$1048576$salt$8$1$" + b64(64),
		"argon2$argon2id$v=19$m=4194304,t=1,p=1$" + rawB64(16) + "$" + rawB64(32),
	} {
		ok, err := h.Verify(context.Background(), "1234", enc)
		if ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("%q: ok=%v err=%v, want ErrMalformedHash", enc, ok, err)
		}
	}
}

func TestNeedsUpgrade(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHasher(t, Options{}) // cheap: m=64, t=1, p=1
	own, err := h.Hash(ctx, "1234")
	if err != nil {
		t.Fatal(err)
	}
	ownAt := func(params string, salt, key int) string {
		return "$argon2id$v=19$" + params + "$" + rawB64(salt) + "$" + rawB64(key)
	}
	for _, tc := range []struct {
		name    string
		encoded string
		want    bool
	}{
		{"own at the Hasher's params", own, false},
		{"own with more memory", ownAt("m=128,t=1,p=1", 16, 32), false},
		{"own with more time", ownAt("m=64,t=3,p=1", 16, 32), false},
		{"own with less memory", ownAt("m=32,t=1,p=1", 16, 32), true},
		{"own with more lanes", ownAt("m=64,t=1,p=2", 16, 32), true},
		{"own with a short salt", ownAt("m=64,t=1,p=1", 8, 32), true},
		{"own with a short key", ownAt("m=64,t=1,p=1", 16, 16), true},
		{"django argon2 at the same params", "argon2" + ownAt("m=64,t=1,p=1", 16, 32), true},
		{"empty", "", true},
		{"unrecognised", "hunter2", true},
		{"out of bounds", ownAt("m=64,t=99,p=1", 16, 32), true},
	} {
		if got := h.NeedsUpgrade(tc.encoded); got != tc.want {
			t.Errorf("%s: NeedsUpgrade(%q) = %v, want %v", tc.name, tc.encoded, got, tc.want)
		}
	}

	// Every legacy format needs upgrading; argon2-cffi's hash at exactly
	// what the package writes at OWASP (t=2, m=19 MiB, p=1, 16-byte salt,
	// 32-byte key) does not, for a Hasher at OWASP.
	owasp := &Hasher{params: OWASP} // NeedsUpgrade only reads the params
	for _, lh := range legacyHashes(t) {
		want := lh.Format != "argon2id-phc-owasp"
		if got := owasp.NeedsUpgrade(lh.Hash); got != want {
			t.Errorf("%s: NeedsUpgrade(%q) = %v, want %v", lh.Format, lh.Hash, got, want)
		}
	}
}
