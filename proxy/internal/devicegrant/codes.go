package devicegrant

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// UserCodeAlphabet is what user codes are made of: consonants only (RFC
// 8628 §6.1), so that no code spells a word, and none of them is easily
// mistaken for another or for a digit. 20⁸ ≈ 2.6·10¹⁰ codes.
const UserCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// userCodeLen is how many letters a user code has; it is shown XXXX-XXXX.
const userCodeLen = 8

// deviceCodeBytes is the device code's randomness: 256 bits, as the
// device code is the only thing that redeems an approval.
const deviceCodeBytes = 32

// maxDeviceCodeLen bounds what a poll may send as a device code; ours are
// 43 characters.
const maxDeviceCodeLen = 256

// newUserCode returns 8 letters of UserCodeAlphabet, each uniform: bytes
// of 240 and above are thrown away, so that the modulo favours no letter.
func newUserCode() string {
	var b strings.Builder
	buf := make([]byte, 16)
	for b.Len() < userCodeLen {
		_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go ≥ 1.24)
		for _, c := range buf {
			if c < 240 && b.Len() < userCodeLen {
				b.WriteByte(UserCodeAlphabet[int(c)%len(UserCodeAlphabet)])
			}
		}
	}
	return b.String()
}

// normalizeUserCode reads a user code as a person typed it: any case, the
// dash and spaces optional. ok is false when what remains is not 8 letters
// of the alphabet.
func normalizeUserCode(in string) (code string, ok bool) {
	if len(in) > 32 {
		return "", false
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(in) {
		switch {
		case r == '-' || r == ' ':
			continue
		case r > 127 || !strings.ContainsRune(UserCodeAlphabet, r):
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != userCodeLen {
		return "", false
	}
	return b.String(), true
}

// FormatUserCode shows a user code as people read it: XXXX-XXXX.
func FormatUserCode(code string) string {
	if len(code) != userCodeLen {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// newDeviceCode returns 256 random bits, base64url without padding.
func newDeviceCode() string {
	b := make([]byte, deviceCodeBytes)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newID returns 128 random bits in hex, to name a request in
// notifications (where neither code may appear).
func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hashCode is how the store knows a device code: its SHA-256. A device
// code has 256 random bits, so a fast hash is enough; nobody can find one
// from its hash.
func hashCode(deviceCode string) string {
	sum := sha256.Sum256([]byte(deviceCode))
	return hex.EncodeToString(sum[:])
}

// The token an approval starts must wait in the store until the device
// polls, possibly on another replica; the store must not hold a token it
// could replay. So it is sealed (HPKE, RFC 9180) to a key pair derived
// from the device code: the approving replica needs only the public key,
// stored with the request, and only the device code opens it.
var (
	sealKEM  = hpke.DHKEM(ecdh.X25519())
	sealKDF  = hpke.HKDFSHA256()
	sealAEAD = hpke.AES128GCM()
)

// sealInfo binds a sealed token to its request.
func sealInfo(id string) []byte { return []byte("authsidecar device grant token " + id) }

// publicKeyFor returns the public key that a device code's approval is
// sealed to.
func publicKeyFor(deviceCode string) ([]byte, error) {
	k, err := sealKEM.DeriveKeyPair([]byte(deviceCode))
	if err != nil {
		return nil, fmt.Errorf("derive sealing key: %w", err)
	}
	return k.PublicKey().Bytes(), nil
}

// seal encrypts plaintext to the public key of request id.
func seal(publicKey []byte, id string, plaintext []byte) ([]byte, error) {
	pk, err := sealKEM.NewPublicKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	out, err := hpke.Seal(pk, sealKDF, sealAEAD, sealInfo(id), plaintext)
	if err != nil {
		return nil, fmt.Errorf("seal token: %w", err)
	}
	return out, nil
}

// open decrypts what seal sealed for request id, with its device code.
func open(deviceCode, id string, sealed []byte) ([]byte, error) {
	k, err := sealKEM.DeriveKeyPair([]byte(deviceCode))
	if err != nil {
		return nil, fmt.Errorf("derive sealing key: %w", err)
	}
	out, err := hpke.Open(k, sealKDF, sealAEAD, sealInfo(id), sealed)
	if err != nil {
		return nil, fmt.Errorf("open sealed token: %w", err)
	}
	return out, nil
}
