// Package keyseal encrypts the signing key the proxy generates and keeps in
// its store, so that whoever reads the database, or a backup of it, does not
// read the key that signs every token.
//
// The key that encrypts it (the key-encryption key) lives outside the
// database, in the file SIGNING_KEY_ENCRYPTION_KEY_FILE names: 32 random
// bytes, used with AES-256-GCM from the standard library. A sealed key is a
// PEM block of its own type, so that it is told apart at a glance from a
// plain "PRIVATE KEY", in the database and in this package:
//
//	-----BEGIN AUTHSIDECAR SEALED SIGNING KEY-----
//	Key-Id: 3f1c0e9a5b7d2468
//	Version: 1
//
//	<base64 of nonce, ciphertext and tag>
//	-----END AUTHSIDECAR SEALED SIGNING KEY-----
//
// Key-Id names the key-encryption key that sealed it (a fingerprint that
// reveals nothing of the key), so that opening it with another key is
// reported as such rather than as damage. The additional authenticated data
// binds the version, the key id and the purpose the caller names, so a blob
// sealed for one purpose does not open for another, and no header can be
// changed without the opening failing.
package keyseal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// BlockType is the PEM type of a sealed key.
const BlockType = "AUTHSIDECAR SEALED SIGNING KEY"

// KeySize is the length of a key-encryption key: AES-256.
const KeySize = 32

// version is the format this package writes and reads. A later format gets
// a new number, and this one stays readable.
const version = "1"

var (
	// ErrNotSealed is returned by Open for anything that is not one sealed
	// block.
	ErrNotSealed = errors.New("not a sealed key")
	// ErrWrongKey is returned by Open for a block sealed with another
	// key-encryption key.
	ErrWrongKey = errors.New("sealed with another encryption key")
	// ErrDamaged is returned by Open for a block that does not decrypt with
	// the key that sealed it: altered, truncated, or sealed for another
	// purpose.
	ErrDamaged = errors.New("damaged, altered or sealed for another purpose")
)

// Key is a key-encryption key. It is safe for concurrent use.
type Key struct {
	aead cipher.AEAD
	id   string
}

// ParseKey reads the contents of a key file. The file holds 32 random bytes
// in one of three forms, told apart by their length:
//
//   - exactly 32 bytes: the key itself (head -c 32 /dev/urandom);
//   - 64 hexadecimal digits (openssl rand -hex 32);
//   - 44 characters of standard, padded base64 (openssl rand -base64 32).
//
// White space around the text forms (a trailing newline) is ignored. Errors
// never quote the file: it is a secret, even when it is the wrong one.
func ParseKey(data []byte) (*Key, error) {
	raw, err := decodeKey(data)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("AES key: %w", err)
	}
	// The nonce is random and travels with the ciphertext: nothing here
	// chooses one, so nothing here can repeat one.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("AES-GCM: %w", err)
	}
	return &Key{aead: aead, id: keyID(raw)}, nil
}

func decodeKey(data []byte) ([]byte, error) {
	if len(data) == KeySize {
		// 32 bytes of text are a password or a 16-byte key in hex, not 32
		// random bytes (random bytes are all printable once in 10^14).
		if printable(data) {
			return nil, errors.New("32 bytes of text, not 32 random bytes; write the key with openssl rand -base64 32")
		}
		return bytes.Clone(data), nil
	}
	text := bytes.TrimSpace(data)
	var raw []byte
	var err error
	switch len(text) {
	case 2 * KeySize:
		raw = make([]byte, KeySize)
		_, err = hex.Decode(raw, text)
	case base64.StdEncoding.EncodedLen(KeySize):
		raw, err = base64.StdEncoding.Strict().DecodeString(string(text))
	default:
		return nil, fmt.Errorf("%d bytes; want 32 random bytes, raw, as 64 hex digits or as 44 characters of base64 (openssl rand -base64 32)", len(data))
	}
	if err != nil || len(raw) != KeySize {
		// The decoder's error quotes the offending byte: leave it out.
		return nil, fmt.Errorf("%d characters that are not valid hex or base64 of 32 bytes", len(text))
	}
	return raw, nil
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// keyID is a fingerprint of the key-encryption key: 8 bytes of an HMAC
// keyed with it, so that it tells keys apart without revealing anything
// about them.
func keyID(raw []byte) string {
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("authsidecar keyseal key id"))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// ID is the key's fingerprint, as written in the Key-Id header of what it
// seals. It is safe to log.
func (k *Key) ID() string { return k.id }

// aad is the additional authenticated data: everything a sealed block says
// about itself, and what the caller means it for.
func aad(ver, keyID, purpose string) []byte {
	return []byte("authsidecar sealed key\x00version " + ver + "\x00key " + keyID + "\x00purpose " + purpose)
}

// Seal encrypts secret for purpose and returns it as a PEM block of
// BlockType. Each call uses a fresh random nonce.
func (k *Key) Seal(secret []byte, purpose string) []byte {
	ct := k.aead.Seal(nil, nil, secret, aad(version, k.id, purpose))
	return pem.EncodeToMemory(&pem.Block{
		Type:    BlockType,
		Headers: map[string]string{"Version": version, "Key-Id": k.id},
		Bytes:   ct,
	})
}

// Open decrypts a block Seal made with this key for purpose. It fails with
// ErrNotSealed for anything but one sealed block, ErrWrongKey for a block
// sealed with another key, and ErrDamaged for one that does not decrypt.
func (k *Key) Open(sealed []byte, purpose string) ([]byte, error) {
	b, err := decodeBlock(sealed)
	if err != nil {
		return nil, err
	}
	if b.Headers["Key-Id"] != k.id {
		return nil, fmt.Errorf("%w: key id %s, this key's is %s", ErrWrongKey, b.Headers["Key-Id"], k.id)
	}
	secret, err := k.aead.Open(nil, nil, b.Bytes, aad(b.Headers["Version"], k.id, purpose))
	if err != nil {
		return nil, ErrDamaged
	}
	return secret, nil
}

// IsSealed reports whether data looks like a sealed key (of any version,
// with any key), as opposed to a plain PEM key. Open says whether it is one.
func IsSealed(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN "+BlockType+"-----"))
}

// SealedBy returns the Key-Id of a sealed block, or "" if it has none: to
// tell an operator which key a block needs.
func SealedBy(data []byte) string {
	if b, err := decodeBlock(data); err == nil {
		return b.Headers["Key-Id"]
	}
	return ""
}

// decodeBlock returns the one sealed block data holds, with nothing else
// around it, in a version this package reads.
func decodeBlock(data []byte) (*pem.Block, error) {
	// pem.Decode skips any text before a block: refuse it here instead,
	// so that a sealed key has one form.
	if !IsSealed(data) {
		return nil, ErrNotSealed
	}
	b, rest := pem.Decode(data)
	if b == nil || b.Type != BlockType || len(bytes.TrimSpace(rest)) != 0 {
		return nil, ErrNotSealed
	}
	if v := b.Headers["Version"]; v != version {
		return nil, fmt.Errorf("sealed key of version %.16q; this program reads version %s", v, version)
	}
	if len(b.Headers) != 2 || b.Headers["Key-Id"] == "" {
		return nil, fmt.Errorf("%w: headers other than Version and Key-Id", ErrNotSealed)
	}
	return b, nil
}
