package token

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// pemType is the only PEM block type ParsePEM accepts: an unencrypted PKCS#8
// private key, which is what `openssl genpkey -algorithm ed25519` writes.
const pemType = "PRIVATE KEY"

// Key is one Ed25519 signing key with its key id, the value of the "kid"
// header of the tokens it signs.
type Key struct {
	ID      string
	Private ed25519.PrivateKey
}

// NewKey wraps priv with its key id: the RFC 7638 JWK thumbprint of its public
// key. The id depends only on the key, so every replica that loads the same key
// file, and every restart, gives it the same id.
//
// priv must be a 64-byte Ed25519 private key; for anything else the id is
// empty and New refuses the key.
func NewKey(priv ed25519.PrivateKey) Key {
	k := Key{Private: priv}
	if len(priv) == ed25519.PrivateKeySize {
		k.ID = thumbprint(publicOf(priv))
	}
	return k
}

// GenerateKey returns a new random key.
func GenerateKey() (Key, error) {
	// A nil reader means the system's secure random source.
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return Key{}, fmt.Errorf("generate Ed25519 key: %w", err)
	}
	return NewKey(priv), nil
}

// MarshalPEM encodes the private key as a PKCS#8 "PRIVATE KEY" PEM block, the
// format ParsePEM reads.
func (k Key) MarshalPEM() ([]byte, error) {
	if len(k.Private) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("key %q: not an Ed25519 private key", k.ID)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("key %q: encode PKCS#8: %w", k.ID, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// ParsePEM reads one or more PEM "PRIVATE KEY" (PKCS#8) blocks holding
// Ed25519 keys, in the order they appear in data.
//
// It is strict on purpose: text outside the blocks, a block of another type
// (a certificate, a public key, "RSA PRIVATE KEY"), an encrypted block or a
// key that is not Ed25519 is an error, not something skipped, so that an
// operator who pasted the wrong file learns it at start rather than signing
// with a key they did not mean. Errors name the block by its position and line
// and never include key material.
func ParsePEM(data []byte) ([]Key, error) {
	var keys []Key
	rest := data
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 {
			break
		}
		line := lineOf(data, len(data)-len(rest))
		n := len(keys) + 1
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return nil, fmt.Errorf("line %d: text outside a PEM block", line)
		}
		// Bound the block ourselves: pem.Decode skips anything it cannot
		// decode and returns the next block it finds, which would silently
		// drop a damaged key and load the one after it.
		end := bytes.Index(rest, []byte("-----END "))
		if end < 0 {
			return nil, fmt.Errorf("PEM block %d (line %d): no END line", n, line)
		}
		if nl := bytes.IndexByte(rest[end:], '\n'); nl >= 0 {
			end += nl + 1
		} else {
			end = len(rest)
		}
		raw := rest[:end]
		rest = rest[end:]
		if bytes.Count(raw, []byte("-----BEGIN ")) != 1 {
			return nil, fmt.Errorf("PEM block %d (line %d): BEGIN line without a matching END line", n, line)
		}
		block, tail := pem.Decode(raw)
		if block == nil || len(bytes.TrimSpace(tail)) != 0 {
			return nil, fmt.Errorf("PEM block %d (line %d): malformed PEM", n, line)
		}
		if block.Type != pemType {
			return nil, fmt.Errorf("PEM block %d (line %d): type %q, want %q (an Ed25519 key in PKCS#8)", n, line, block.Type, pemType)
		}
		if len(block.Headers) != 0 {
			return nil, fmt.Errorf("PEM block %d (line %d): has PEM headers (encrypted?); want an unencrypted key", n, line)
		}
		parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (line %d): not a PKCS#8 private key: %w", n, line, err)
		}
		priv, ok := parsed.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("PEM block %d (line %d): %s key, want Ed25519", n, line, keyKind(parsed))
		}
		keys = append(keys, NewKey(priv))
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM \"PRIVATE KEY\" block found")
	}
	return keys, nil
}

// keyKind names a parsed key's algorithm for an error message.
func keyKind(k any) string {
	switch k.(type) {
	case *rsa.PrivateKey:
		return "RSA"
	case *ecdsa.PrivateKey:
		return "ECDSA"
	case *ecdh.PrivateKey:
		return "X25519"
	default:
		return "unsupported"
	}
}

func lineOf(data []byte, offset int) int {
	return bytes.Count(data[:offset], []byte("\n")) + 1
}

// publicOf returns the public half of a 64-byte private key.
func publicOf(priv ed25519.PrivateKey) ed25519.PublicKey {
	return priv.Public().(ed25519.PublicKey)
}

// thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 public key (RFC 8037
// section 2): the SHA-256 of the JWK's required members in lexicographic order
// with no whitespace, base64url without padding. base64url output never needs
// JSON escaping, so the canonical JSON is built directly.
func thumbprint(pub ed25519.PublicKey) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + b64(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return b64(sum[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk is the public JWK of one key as served in the JWKS. It has no field for
// a private part, so none can be served by mistake.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// marshalJWKS encodes the public keys, in order, as a JWK Set (RFC 7517).
func marshalJWKS(keys []verifyKey) ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, jwk{
			Kty: "OKP",
			Crv: "Ed25519",
			X:   b64(k.public),
			Kid: k.id,
			Alg: algorithm,
			Use: "sig",
		})
	}
	return json.Marshal(set)
}
