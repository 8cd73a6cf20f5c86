package password

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	stdhash "hash" // the package has a func hash
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/scrypt"
)

// Legacy hashes: users imported from another system keep the hashes it
// made, so that they can log in with the PINs they know; after such a
// login the caller replaces the hash with one from Hasher.Hash (see
// NeedsUpgrade). This package only ever verifies these formats, it never
// writes them.
//
// Every work factor read from a hash is bounded before anything is
// computed: a hash is data from a database or an import file, and a crafted
// one must not pin a worker for minutes or make it allocate gigabytes. The
// bounds admit what the systems we import from write by default, with room
// for operators who raised them, and stop at about a second of one core.
const (
	// maxEncodedLen: the longest legitimate hash here (Django's scrypt) is
	// about 130 bytes; anything much longer is not a hash.
	maxEncodedLen = 512

	// PBKDF2: Django 5.2 writes 1,000,000 iterations of SHA-256, older
	// versions fewer (and SHA-1 hashes are older still). Two million take
	// about half a second.
	maxPBKDF2Iterations = 2_000_000

	// bcrypt: 4 is the algorithm's own minimum (and x/crypto's MinCost).
	// Each step doubles the work; 14 takes about a second, while systems
	// write 10 to 12 (Django: 12). Cost 31, which the format allows, would
	// take days.
	minBcryptCost = 4
	maxBcryptCost = 14

	// scrypt: Django writes N=2^14, r=8, p=5. Memory is 128·N·r bytes and
	// the work grows with N·r·p; p runs one after another in x/crypto, so
	// it costs time, not memory. N·r·p of 2^22 take about 1.5 s.
	maxScryptN      = 1 << 17
	maxScryptRP     = 64
	maxScryptWork   = 1 << 22
	maxScryptMemory = 256 << 20 // bytes, as maxMemory is for argon2id

	// scryptKeyLen: Django's scrypt always derives 64 bytes (its PBKDF2
	// derives the digest's size).
	scryptKeyLen = 64
)

// Prefixes of the formats Check recognises.
const (
	ownPrefix          = "$argon2id$"
	djangoArgon2       = "argon2$"
	djangoPBKDF2SHA256 = "pbkdf2_sha256$"
	djangoPBKDF2SHA1   = "pbkdf2_sha1$"
	djangoBcryptSHA256 = "bcrypt_sha256$"
	djangoBcrypt       = "bcrypt$"
	djangoScrypt       = "scrypt$"
)

// Check reports whether encoded is a hash that Verify can check: nil for a
// recognised format whose parameters are within bounds, else an error
// wrapping ErrMalformedHash that says what is wrong (never the hash
// itself). It computes no hash, so an importer can check every line of a
// file before it stores any, and tell which line is wrong and why.
//
// Recognised: this package's own PHC argon2id; Django's pbkdf2_sha256,
// pbkdf2_sha1, argon2 (argon2id only), bcrypt_sha256, bcrypt and scrypt;
// bcrypt's $2a$, $2b$ and $2y$.
func Check(encoded string) error {
	_, err := parse(encoded)
	return err
}

// NeedsUpgrade reports whether encoded, once a login has verified it,
// should be replaced by a hash from h.Hash of the same password: true for
// every legacy format, and for this package's own argon2id when it is
// weaker than h would write now (less memory or time, a shorter salt or
// key) or uses another number of lanes (threads). Lanes count because a
// slot budgets one hash at h's parallelism: a hash with more lanes than
// that keeps more cores busy than its slot stands for, and one with fewer
// is not what h writes.
//
// A hash with more memory or time than h's is kept: rewriting it would
// make it cheaper to attack, and Check already bounds what it costs to
// verify. A hash that Check refuses needs upgrading too, though no login
// will ever verify it.
//
// It is a method because the standard is the Hasher's Params; like
// Check, it computes no hash.
func (h *Hasher) NeedsUpgrade(encoded string) bool {
	v, err := parse(encoded)
	if err != nil {
		return true
	}
	own, ok := v.(argon2idHash)
	if !ok {
		return true
	}
	p := own.params
	return p.Memory < h.params.Memory || p.Time < h.params.Time || p.Threads != h.params.Threads ||
		len(own.salt) < saltLen || len(own.key) < keyLen
}

// verifier is a parsed hash whose parameters are within bounds. Parsing is
// cheap; matches is where the hash is computed, in a worker.
type verifier interface {
	matches(pw []byte) (bool, error)
}

// parse recognises encoded by its prefix and checks its fields and bounds.
func parse(encoded string) (verifier, error) {
	if encoded == "" {
		return nil, fmt.Errorf("%w: empty", ErrMalformedHash)
	}
	if len(encoded) > maxEncodedLen {
		return nil, fmt.Errorf("%w: %d bytes long, more than any recognised format (%d)", ErrMalformedHash, len(encoded), maxEncodedLen)
	}
	// Printable ASCII only: every format here is (Django's salts are
	// letters and digits), and Go's base64 would otherwise skip line
	// breaks inside a field.
	for i := range len(encoded) {
		if c := encoded[i]; c <= ' ' || c > '~' {
			return nil, fmt.Errorf("%w: byte %d is not printable ASCII", ErrMalformedHash, i)
		}
	}
	switch {
	case strings.HasPrefix(encoded, ownPrefix):
		p, salt, key, err := decode(encoded)
		if err != nil {
			return nil, err
		}
		return argon2idHash{params: p, salt: salt, key: key}, nil
	case strings.HasPrefix(encoded, "$2"):
		return parseBcrypt("bcrypt", encoded, false)
	case strings.HasPrefix(encoded, djangoPBKDF2SHA256):
		return parsePBKDF2("django pbkdf2_sha256", encoded, sha256.New, sha256.Size)
	case strings.HasPrefix(encoded, djangoPBKDF2SHA1):
		return parsePBKDF2("django pbkdf2_sha1", encoded, sha1.New, sha1.Size)
	case strings.HasPrefix(encoded, djangoArgon2):
		// Django writes its name and then argon2-cffi's PHC string, whose
		// leading $ stands for the separator.
		rest := encoded[len(djangoArgon2)-1:]
		if !strings.HasPrefix(rest, ownPrefix) {
			return nil, fmt.Errorf("%w: django argon2: variant %q: only argon2id is accepted", ErrMalformedHash, field(rest, 1))
		}
		p, salt, key, err := decode(rest)
		if err != nil {
			return nil, fmt.Errorf("django argon2: %w", err)
		}
		return djangoArgon2Hash{argon2idHash{params: p, salt: salt, key: key}}, nil
	case strings.HasPrefix(encoded, djangoBcryptSHA256):
		// Django writes its name, a $, then bcrypt's own $2b$...
		return parseBcrypt("django bcrypt_sha256", encoded[len(djangoBcryptSHA256):], true)
	case strings.HasPrefix(encoded, djangoBcrypt):
		return parseBcrypt("django bcrypt", encoded[len(djangoBcrypt):], false)
	case strings.HasPrefix(encoded, djangoScrypt):
		return parseScrypt(encoded)
	case strings.HasPrefix(encoded, "$argon2"):
		return nil, fmt.Errorf("%w: variant %q: only argon2id is accepted", ErrMalformedHash, field(encoded, 1))
	default:
		return nil, fmt.Errorf("%w: unrecognised format%s", ErrMalformedHash, scheme(encoded))
	}
}

// field is the i-th $-separated field of s, if it is short enough to show.
func field(s string, i int) string {
	parts := strings.SplitN(s, "$", i+2)
	if i >= len(parts) || len(parts[i]) > 20 {
		return "?"
	}
	return parts[i]
}

// scheme names what looks like the scheme of an unrecognised hash, for the
// error; only a short name of letters, digits and _ or -, since what is
// there may be a plain password or a bare hex digest.
func scheme(encoded string) string {
	name, _, found := strings.Cut(strings.TrimPrefix(encoded, "$"), "$")
	if !found || name == "" || len(name) > 20 {
		return ""
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return ""
		}
	}
	return fmt.Sprintf(" %q", name)
}

// argon2idHash is this package's own format.
type argon2idHash struct {
	params    Params
	salt, key []byte
}

func (a argon2idHash) matches(pw []byte) (bool, error) {
	return verifyArgon2id(pw, a.params, a.salt, a.key), nil
}

// djangoArgon2Hash is the same hash behind Django's prefix: its own type,
// so that NeedsUpgrade tells it apart (the stored string is not ours).
type djangoArgon2Hash struct{ argon2idHash }

// pbkdf2Hash is Django's PBKDF2PasswordHasher or PBKDF2SHA1PasswordHasher:
// algorithm$iterations$salt$base64(key), where the salt's text is used as
// bytes and the key is as long as the digest.
type pbkdf2Hash struct {
	newHash    func() stdhash.Hash
	iterations int
	salt, key  []byte
}

func parsePBKDF2(name, encoded string, newHash func() stdhash.Hash, size int) (verifier, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 4 {
		return nil, fmt.Errorf("%w: %s: %d fields, want 4 (algorithm$iterations$salt$hash)", ErrMalformedHash, name, len(parts))
	}
	iter, err := number(parts[1])
	if err != nil || iter < 1 || iter > maxPBKDF2Iterations {
		return nil, fmt.Errorf("%w: %s: iterations %q not in 1..%d", ErrMalformedHash, name, parts[1], maxPBKDF2Iterations)
	}
	if parts[2] == "" {
		return nil, fmt.Errorf("%w: %s: empty salt", ErrMalformedHash, name)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(parts[3])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: hash is not base64: %w", ErrMalformedHash, name, err)
	}
	if len(key) != size {
		return nil, fmt.Errorf("%w: %s: hash is %d bytes, want %d", ErrMalformedHash, name, len(key), size)
	}
	return pbkdf2Hash{newHash: newHash, iterations: iter, salt: []byte(parts[2]), key: key}, nil
}

func (p pbkdf2Hash) matches(pw []byte) (bool, error) {
	got, err := pbkdf2.Key(p.newHash, string(pw), p.salt, p.iterations, len(p.key))
	if err != nil {
		return false, fmt.Errorf("pbkdf2: %w", err)
	}
	return subtle.ConstantTimeCompare(got, p.key) == 1, nil
}

// bcryptHash is a modular-crypt bcrypt hash ($2a$, $2b$, $2y$), bare or
// behind Django's bcrypt or bcrypt_sha256 prefix. Django's bcrypt_sha256
// hashes the password first, as the hex digits of its SHA-256, so that
// bcrypt's limit of 72 bytes does not cut long passwords.
type bcryptHash struct {
	hash      []byte
	sha256Hex bool
}

// bcryptAlphabet is bcrypt's own base64 alphabet.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// parseBcrypt checks $2?$cc$ and 53 characters of salt and hash (22 + 31).
// $2a$, $2b$ and $2y$ are the same algorithm for any password a person
// types; $2x$ (crypt_blowfish's buggy one) and the original $2$ are not
// accepted, because x/crypto cannot reproduce them.
func parseBcrypt(name, encoded string, sha256Hex bool) (verifier, error) {
	const size = len("$2b$04$") + 53
	if len(encoded) < 4 || encoded[0] != '$' || encoded[1] != '2' || encoded[3] != '$' {
		return nil, fmt.Errorf("%w: %s: not a $2a$, $2b$ or $2y$ hash", ErrMalformedHash, name)
	}
	if v := encoded[2]; v != 'a' && v != 'b' && v != 'y' {
		return nil, fmt.Errorf("%w: %s: version $2%c$: only $2a$, $2b$ and $2y$ are accepted", ErrMalformedHash, name, v)
	}
	if len(encoded) != size || encoded[6] != '$' {
		return nil, fmt.Errorf("%w: %s: %d characters, want %d ($2b$cc$ and 53 of salt and hash)", ErrMalformedHash, name, len(encoded), size)
	}
	// The cost is always two digits, 04 to 31.
	c0, c1 := encoded[4], encoded[5]
	if c0 < '0' || c0 > '9' || c1 < '0' || c1 > '9' {
		return nil, fmt.Errorf("%w: %s: cost %q is not two digits", ErrMalformedHash, name, encoded[4:6])
	}
	cost := int(c0-'0')*10 + int(c1-'0')
	if cost < minBcryptCost || cost > maxBcryptCost {
		return nil, fmt.Errorf("%w: %s: cost %d not in %d..%d (each step doubles the work; %d takes about a second)",
			ErrMalformedHash, name, cost, minBcryptCost, maxBcryptCost, maxBcryptCost)
	}
	for i := 7; i < len(encoded); i++ {
		if !strings.ContainsRune(bcryptAlphabet, rune(encoded[i])) {
			return nil, fmt.Errorf("%w: %s: salt or hash is not bcrypt's base64", ErrMalformedHash, name)
		}
	}
	return bcryptHash{hash: []byte(encoded), sha256Hex: sha256Hex}, nil
}

func (b bcryptHash) matches(pw []byte) (bool, error) {
	if b.sha256Hex {
		sum := sha256.Sum256(pw)
		pw = []byte(hex.EncodeToString(sum[:]))
	}
	// Past 72 bytes bcrypt ignores a password, here as in the systems that
	// made these hashes. The comparison is constant-time.
	err := bcrypt.CompareHashAndPassword(b.hash, pw)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	default:
		return false, fmt.Errorf("bcrypt: %w", err)
	}
}

// scryptHash is Django's ScryptPasswordHasher (Django 4.0+):
// scrypt$N$salt$r$p$base64(key), where the salt's text is used as bytes
// and the key is 64 bytes.
type scryptHash struct {
	n, r, p   int
	salt, key []byte
}

func parseScrypt(encoded string) (verifier, error) {
	const name = "django scrypt"
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 {
		return nil, fmt.Errorf("%w: %s: %d fields, want 6 (scrypt$N$salt$r$p$hash)", ErrMalformedHash, name, len(parts))
	}
	n, errN := number(parts[1])
	r, errR := number(parts[3])
	p, errP := number(parts[4])
	if errN != nil || errR != nil || errP != nil {
		return nil, fmt.Errorf("%w: %s: N, r and p must be numbers of at most 9 digits, got %q, %q, %q", ErrMalformedHash, name, parts[1], parts[3], parts[4])
	}
	if n < 2 || n > maxScryptN || n&(n-1) != 0 {
		return nil, fmt.Errorf("%w: %s: N=%d is not a power of two in 2..%d", ErrMalformedHash, name, n, maxScryptN)
	}
	// Each bound keeps the next product from overflowing.
	if r < 1 || p < 1 || r > maxScryptRP || p > maxScryptRP || r*p > maxScryptRP {
		return nil, fmt.Errorf("%w: %s: r=%d, p=%d: need r, p ≥ 1 and r·p ≤ %d", ErrMalformedHash, name, r, p, maxScryptRP)
	}
	if mem := 128 * n * r; mem > maxScryptMemory {
		return nil, fmt.Errorf("%w: %s: N=%d, r=%d would take %d MiB, more than %d", ErrMalformedHash, name, n, r, mem>>20, maxScryptMemory>>20)
	}
	if work := n * r * p; work > maxScryptWork {
		return nil, fmt.Errorf("%w: %s: N·r·p = %d, more than %d", ErrMalformedHash, name, work, maxScryptWork)
	}
	if parts[2] == "" {
		return nil, fmt.Errorf("%w: %s: empty salt", ErrMalformedHash, name)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(parts[5])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: hash is not base64: %w", ErrMalformedHash, name, err)
	}
	if len(key) != scryptKeyLen {
		return nil, fmt.Errorf("%w: %s: hash is %d bytes, want %d", ErrMalformedHash, name, len(key), scryptKeyLen)
	}
	return scryptHash{n: n, r: r, p: p, salt: []byte(parts[2]), key: key}, nil
}

func (s scryptHash) matches(pw []byte) (bool, error) {
	got, err := scrypt.Key(pw, s.salt, s.n, s.r, s.p, len(s.key))
	if err != nil {
		return false, fmt.Errorf("scrypt: %w", err)
	}
	return subtle.ConstantTimeCompare(got, s.key) == 1, nil
}

// number parses a decimal work factor: digits only, no sign, no leading
// zero (no system writes one, and a canonical number cannot hide a huge
// one behind padding), at most 9 digits so that it cannot overflow.
func number(s string) (int, error) {
	if s == "" || len(s) > 9 || (s[0] == '0' && len(s) > 1) {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a number: %q", s)
		}
	}
	return strconv.Atoi(s)
}
