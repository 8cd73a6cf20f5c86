package token

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"go/parser"
	gotoken "go/token"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testIssuer = "authsidecar-test"

// t0 is the fixed time every test clock starts from.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func clock(t time.Time) func() time.Time { return func() time.Time { return t } }

// seededKey returns a deterministic key, so failures reproduce.
func seededKey(b byte) Key {
	return NewKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize)))
}

func newSigner(t testing.TB, keys []Key, opts Options) *Signer {
	t.Helper()
	if opts.Issuer == "" {
		opts.Issuer = testIssuer
	}
	if opts.Now == nil {
		opts.Now = clock(t0)
	}
	s, err := New(keys, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func validClaims() Claims {
	return Claims{
		SessionID:  "sess-7f3a",
		Generation: 3,
		Subject:    "user-42",
		DeviceID:   "VR-DEVICE-002",
		IssuedAt:   t0,
		ExpiresAt:  t0.Add(24 * time.Hour),
	}
}

// claimsJSON is the payload Sign would write for validClaims.
func claimsJSON() map[string]any {
	return map[string]any{
		"sid": "sess-7f3a",
		"gen": 3,
		"sub": "user-42",
		"dev": "VR-DEVICE-002",
		"iss": testIssuer,
		"iat": t0.Unix(),
		"exp": t0.Add(24 * time.Hour).Unix(),
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func seg(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// handToken builds a compact JWS from any header and payload, signed with
// sign (nil: empty signature), the way an attacker would.
func handToken(t testing.TB, header, payload map[string]any, sign func([]byte) []byte) string {
	t.Helper()
	input := seg(t, header) + "." + seg(t, payload)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func edSign(priv ed25519.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte { return ed25519.Sign(priv, in) }
}

// jwtSign signs with the jwt library's implementation of another algorithm;
// the header gets that algorithm's "alg" and the other members of header.
func jwtSign(t testing.TB, method jwt.SigningMethod, header, payload map[string]any, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims(payload))
	for k, v := range header {
		if k != "alg" {
			tok.Header[k] = v
		}
	}
	raw, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return raw
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

var rsaTestKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	k := seededKey(1)
	tests := []struct {
		name   string
		opts   Options
		claims Claims
		want   Claims
	}{
		{name: "all claims", claims: validClaims(), want: validClaims()},
		{
			name:   "no subject, generation zero",
			claims: Claims{SessionID: "s", ExpiresAt: t0.Add(time.Hour), IssuedAt: t0},
			want:   Claims{SessionID: "s", ExpiresAt: t0.Add(time.Hour), IssuedAt: t0},
		},
		{
			name:   "zero IssuedAt takes the clock",
			claims: Claims{SessionID: "s", Generation: 1, ExpiresAt: t0.Add(time.Hour)},
			want:   Claims{SessionID: "s", Generation: 1, ExpiresAt: t0.Add(time.Hour), IssuedAt: t0},
		},
		{
			name: "sub-second times truncate to the second",
			claims: Claims{SessionID: "s", IssuedAt: t0.Add(400 * time.Millisecond),
				ExpiresAt: t0.Add(time.Hour + 900*time.Millisecond)},
			want: Claims{SessionID: "s", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		},
		{
			name:   "audience",
			opts:   Options{Audience: "storage"},
			claims: validClaims(),
			want:   validClaims(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSigner(t, []Key{k}, tt.opts)
			raw, err := s.Sign(tt.claims)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			got, err := s.Verify(raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != tt.want {
				t.Errorf("claims:\n got %+v\nwant %+v", got, tt.want)
			}
			if got.ExpiresAt.Location() != time.UTC {
				t.Errorf("ExpiresAt in %v, want UTC", got.ExpiresAt.Location())
			}
		})
	}
}

func TestSignHeader(t *testing.T) {
	t.Parallel()
	k := seededKey(1)
	s := newSigner(t, []Key{k}, Options{})
	raw, err := s.Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeHeader(t, raw); len(got) != 3 || got["alg"] != "EdDSA" || got["typ"] != "JWT" || got["kid"] != k.ID {
		t.Errorf("header = %v, want alg EdDSA, typ JWT, kid %s and nothing else", got, k.ID)
	}
}

func decodeHeader(t testing.TB, raw string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestVerifyRefuses feeds Verify the attacks of RFC 8725 and the
// "critical vulnerabilities in JSON Web Token libraries" family, plus
// garbage, and checks each is refused for the right reason.
func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	k := seededKey(1)
	pub := publicOf(k.Private)
	attacker := seededKey(99)
	s := newSigner(t, []Key{k}, Options{})

	hdr := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": k.ID}
	body := claimsJSON()
	signed := func(header, payload map[string]any) string {
		return handToken(t, header, payload, edSign(k.Private))
	}
	good, err := s.Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")

	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	attackerJWK := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(publicOf(attacker.Private))}

	// Tokens made by other Signers sharing our key or clock.
	otherIssuer, _ := newSigner(t, []Key{k}, Options{Issuer: "someone-else"}).Sign(validClaims())
	expired, _ := newSigner(t, []Key{k}, Options{Now: clock(t0.Add(-48 * time.Hour))}).Sign(Claims{
		SessionID: "s", IssuedAt: t0.Add(-48 * time.Hour), ExpiresAt: t0.Add(-time.Second)})
	future := validClaims()
	future.IssuedAt = t0.Add(time.Minute)
	issuedInFuture, _ := s.Sign(future)
	foreign, _ := newSigner(t, []Key{{ID: k.ID, Private: attacker.Private}}, Options{}).Sign(validClaims())

	tamperedPayload := parts[0] + "." + seg(t, with(body, "sid", "someone-elses-session")) + "." + parts[2]
	sig := []byte(parts[2])
	if sig[10] == 'A' {
		sig[10] = 'B'
	} else {
		sig[10] = 'A'
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)
	sigBytes, _ := base64.RawURLEncoding.DecodeString(parts[2])
	// The last character of a 64-byte signature carries 4 unused bits;
	// setting them must not give a second spelling of the same token.
	last := base64.RawURLEncoding.EncodeToString(sigBytes)
	lastIdx := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", last[len(last)-1])
	trailingBits := parts[0] + "." + parts[1] + "." + last[:len(last)-1] +
		string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[lastIdx|1])

	tests := []struct {
		name string
		raw  string
		want error // the reason; every one also wraps ErrInvalid
	}{
		// Algorithm confusion.
		{"alg none", handToken(t, with(hdr, "alg", "none"), body, nil), errAlgorithm},
		{"alg none with a real signature", handToken(t, with(hdr, "alg", "none"), body, nil) + parts[2], errAlgorithm},
		{"alg NONE", handToken(t, with(hdr, "alg", "NONE"), body, nil), errAlgorithm},
		{"alg missing", signed(with(hdr, "alg", nil), body), errAlgorithm},
		{"alg not a string", signed(with(hdr, "alg", 1), body), errAlgorithm},
		{"alg ed25519 spelled otherwise", signed(with(hdr, "alg", "Ed25519"), body), errAlgorithm},
		{"HS256 keyed with the raw public key", jwtSign(t, jwt.SigningMethodHS256, hdr, body, []byte(pub)), errAlgorithm},
		{"HS256 keyed with the public key PEM", jwtSign(t, jwt.SigningMethodHS256, hdr, body, pubPEM), errAlgorithm},
		{"RS256 with another key", jwtSign(t, jwt.SigningMethodRS256, hdr, body, rsaTestKey()), errAlgorithm},
		{"HMAC with the public key under alg EdDSA", handToken(t, hdr, body,
			func(in []byte) []byte { return hmacSHA256(pub, in) }), errSignature},
		{"ES256 with another key", jwtSign(t, jwt.SigningMethodES256, hdr, body, ecKey), errAlgorithm},

		// Claims.
		{"wrong issuer", otherIssuer, errIssuer},
		{"missing issuer", signed(hdr, with(body, "iss", nil)), errNoIssuer},
		{"missing exp", signed(hdr, with(body, "exp", nil)), errNoExpiry},
		{"expired", expired, ErrExpired},
		{"iat in the future", issuedInFuture, errIssuedInFuture},
		{"nbf in the future", signed(hdr, with(body, "nbf", t0.Add(time.Hour).Unix())), errNotYetValid},
		{"exp not a number", signed(hdr, with(body, "exp", "tomorrow")), errDate},
		{"sid missing", signed(hdr, with(body, "sid", nil)), errNoSession},
		{"sid empty", signed(hdr, with(body, "sid", "")), errNoSession},
		{"sid null", signed(hdr, with(body, "sid", json.RawMessage("null"))), errNoSession},
		{"sid a number", signed(hdr, with(body, "sid", 12)), errMalformed},
		{"gen negative", signed(hdr, with(body, "gen", -1)), errGeneration},
		{"gen missing", signed(hdr, with(body, "gen", nil)), errGeneration},
		{"gen fractional", signed(hdr, with(body, "gen", 1.5)), errMalformed},
		{"gen a string", signed(hdr, with(body, "gen", "1")), errMalformed},
		{"gen beyond int64", signed(hdr, with(body, "gen", json.Number("9223372036854775808"))), errMalformed},
		{"payload not an object", handToken(t, hdr, nil, edSign(k.Private)), errNoExpiry},

		// Key selection.
		{"unknown kid", signed(with(hdr, "kid", "no-such-key"), body), errUnknownKeyID},
		{"missing kid", signed(with(hdr, "kid", nil), body), errNoKeyID},
		{"empty kid", signed(with(hdr, "kid", ""), body), errNoKeyID},
		{"kid not a string", signed(with(hdr, "kid", 7), body), errNoKeyID},
		{"kid a path", signed(with(hdr, "kid", "../../etc/passwd"), body), errUnknownKeyID},
		{"kid SQL", signed(with(hdr, "kid", "' OR 1=1 --"), body), errUnknownKeyID},
		{"kid 2000 bytes", signed(with(hdr, "kid", strings.Repeat("k", 2000)), body), errUnknownKeyID},
		{"kid 10 KB", signed(with(hdr, "kid", strings.Repeat("k", 10<<10)), body), errTooLong},
		{"kid of a loaded key, signed by another", foreign, errSignature},
		{"jwk header carrying the signing key", handToken(t,
			with(hdr, "kid", thumbprint(publicOf(attacker.Private)), "jwk", attackerJWK), body, edSign(attacker.Private)), errHeader},
		{"jwk header with a loaded kid", handToken(t,
			with(hdr, "jwk", attackerJWK), body, edSign(attacker.Private)), errHeader},
		{"jku header", handToken(t,
			with(hdr, "jku", "https://attacker.example/jwks.json"), body, edSign(attacker.Private)), errHeader},
		{"x5u header", signed(with(hdr, "x5u", "https://attacker.example/cert.pem"), body), errHeader},
		{"x5c header", signed(with(hdr, "x5c", []string{"MIIB"}), body), errHeader},
		{"crit header", signed(with(hdr, "crit", []string{"exp"}), body), errHeader},
		{"b64 false header", signed(with(hdr, "b64", false), body), errHeader},
		{"typ other", signed(with(hdr, "typ", "at+jwt"), body), errType},
		{"typ lower case", signed(with(hdr, "typ", "jwt"), body), errType},
		{"typ not a string", signed(with(hdr, "typ", 1), body), errType},

		// Integrity.
		{"tampered payload", tamperedPayload, errSignature},
		{"tampered signature", tamperedSig, errSignature},
		{"signature trailing bits set", trailingBits, errMalformed},
		{"signature stripped", parts[0] + "." + parts[1] + ".", errSignature},
		{"signature of another token", parts[0] + "." + seg(t, with(body, "gen", 4)) + "." + parts[2], errSignature},

		// Size and encoding.
		{"over MaxTokenBytes, validly signed", signed(hdr, with(body, "sid", strings.Repeat("s", MaxTokenBytes))), errTooLong},
		{"empty", "", errMalformed},
		{"one dot", "a.b", errMalformed},
		{"four parts", "a.b.c.d", errMalformed},
		{"three bad parts", "a.b.c", errMalformed},
		{"dots only", "..", errMalformed},
		{"not base64", "!!!.@@@.###", errMalformed},
		{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("nope")) + "." + parts[1] + "." + parts[2], errMalformed},
		{"header a JSON array", seg(t, []int{1}) + "." + parts[1] + "." + parts[2], errMalformed},
		{"newline inside", parts[0] + "." + parts[1] + "\n." + parts[2], errMalformed},
		{"CR inside the signature", parts[0] + "." + parts[1] + "." + parts[2][:5] + "\r" + parts[2][5:], errMalformed},
		{"padded", parts[0] + "." + parts[1] + "." + parts[2] + "==", errMalformed},
		{"leading space", " " + good, errMalformed},
		{"Bearer prefix left on", "Bearer " + good, errMalformed},
		{"standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/", errMalformed},
		{"NUL byte", good + "\x00", errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.Verify(tt.raw)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", got)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, does not wrap ErrInvalid", err)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %q, want reason %q", err, tt.want)
			}
			if errors.Is(err, ErrExpired) != (tt.want == ErrExpired) {
				t.Errorf("err = %q: ErrExpired only for expired tokens", err)
			}
			// Only an expired token, whose signature verified, returns its
			// claims (so its session can be cleaned up); no other failure
			// may leak what an unverified token says.
			if tt.want == ErrExpired {
				if got.SessionID == "" {
					t.Errorf("expired token: claims not returned")
				}
			} else if got != (Claims{}) {
				t.Errorf("claims returned with an error: %+v", got)
			}
			if len(err.Error()) > 64 {
				t.Errorf("error text %q is long: it must not echo the token", err)
			}
		})
	}
}

func TestVerifyErrorText(t *testing.T) {
	t.Parallel()
	k := seededKey(1)
	s := newSigner(t, []Key{k}, Options{})
	expired, _ := newSigner(t, []Key{k}, Options{Now: clock(t0.Add(-48 * time.Hour))}).Sign(Claims{
		SessionID: "s", ExpiresAt: t0.Add(-time.Hour)})
	_, err := s.Verify(expired)
	if got, want := err.Error(), "invalid token: expired"; got != want {
		t.Errorf("expired: %q, want %q", got, want)
	}
	// The parser's own error is kept as a cause for errors.Is.
	if !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("expired: cause jwt.ErrTokenExpired lost: %v", err)
	}
	_, err = s.Verify(handToken(t, map[string]any{"alg": strings.Repeat("X", 200), "kid": k.ID}, claimsJSON(), nil))
	if got, want := err.Error(), "invalid token: algorithm not allowed"; got != want {
		t.Errorf("bad alg: %q, want %q (no text from the token)", got, want)
	}
}

func TestVerifyLeewayAndClock(t *testing.T) {
	t.Parallel()
	k := seededKey(1)
	exp := t0.Add(time.Hour)
	tests := []struct {
		name    string
		iat     time.Time
		now     time.Time
		leeway  time.Duration
		wantErr error
	}{
		{"one second before exp", t0, exp.Add(-time.Second), 0, nil},
		{"at exp", t0, exp, 0, ErrExpired},
		{"30s after exp within leeway", t0, exp.Add(30 * time.Second), time.Minute, nil},
		{"past exp beyond leeway", t0, exp.Add(2 * time.Minute), time.Minute, ErrExpired},
		{"iat 30s ahead within leeway", t0.Add(30 * time.Second), t0, time.Minute, nil},
		{"iat 30s ahead, no leeway", t0.Add(30 * time.Second), t0, 0, errIssuedInFuture},
		{"iat now", t0, t0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			signer := newSigner(t, []Key{k}, Options{})
			raw, err := signer.Sign(Claims{SessionID: "s", IssuedAt: tt.iat, ExpiresAt: exp})
			if err != nil {
				t.Fatal(err)
			}
			verifier := newSigner(t, []Key{k}, Options{Now: clock(tt.now), Leeway: tt.leeway})
			_, err = verifier.Verify(raw)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyAudience(t *testing.T) {
	t.Parallel()
	k := seededKey(1)
	withAud := newSigner(t, []Key{k}, Options{Audience: "storage"})
	otherAud := newSigner(t, []Key{k}, Options{Audience: "billing"})
	noAud := newSigner(t, []Key{k}, Options{})
	fromOther, _ := otherAud.Sign(validClaims())
	fromNone, _ := noAud.Sign(validClaims())
	tests := []struct {
		name string
		raw  string
	}{
		{"other audience", fromOther},
		{"no audience", fromNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := withAud.Verify(tt.raw); !errors.Is(err, errAudience) {
				t.Errorf("Verify: %v, want %v", err, errAudience)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	old, cur := seededKey(1), seededKey(2)
	sOld := newSigner(t, []Key{old}, Options{})
	sBoth := newSigner(t, []Key{cur, old}, Options{})
	sNew := newSigner(t, []Key{cur}, Options{})

	byOld, err := sOld.Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	byBoth, err := sBoth.Sign(validClaims())
	if err != nil {
		t.Fatal(err)
	}
	if kid := decodeHeader(t, byBoth)["kid"]; kid != cur.ID {
		t.Errorf("Sign used kid %v, want the first key's %s", kid, cur.ID)
	}

	tests := []struct {
		name    string
		signer  *Signer
		raw     string
		wantErr error
	}{
		{"[new old] verifies a token of [old]", sBoth, byOld, nil},
		{"[new old] verifies its own token", sBoth, byBoth, nil},
		{"[new] verifies a token of [new old]", sNew, byBoth, nil},
		{"[new] refuses a token of [old]", sNew, byOld, errUnknownKeyID},
		{"[old] refuses a token of [new old]", sOld, byBoth, errUnknownKeyID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.signer.Verify(tt.raw)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	k := seededKey(1)
	mismatched := bytes.Clone(k.Private)
	copy(mismatched[32:], publicOf(seededKey(2).Private))
	tests := []struct {
		name string
		keys []Key
		opts Options
		want string
	}{
		{"no keys", nil, Options{Issuer: testIssuer}, "no signing keys"},
		{"no issuer", []Key{k}, Options{}, "issuer is required"},
		{"negative leeway", []Key{k}, Options{Issuer: testIssuer, Leeway: -time.Second}, "negative leeway"},
		{"duplicate kid", []Key{k, k}, Options{Issuer: testIssuer}, "duplicate key id"},
		{"duplicate chosen kid", []Key{{ID: "a", Private: k.Private}, {ID: "a", Private: seededKey(2).Private}}, Options{Issuer: testIssuer}, "duplicate key id"},
		{"short key", []Key{NewKey(k.Private[:32])}, Options{Issuer: testIssuer}, "not an Ed25519 private key"},
		{"nil key", []Key{{ID: "x"}}, Options{Issuer: testIssuer}, "not an Ed25519 private key"},
		{"public half of another key", []Key{{ID: "x", Private: mismatched}}, Options{Issuer: testIssuer}, "does not match"},
		{"empty id", []Key{{Private: k.Private}}, Options{Issuer: testIssuer}, "empty key id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := New(tt.keys, tt.opts)
			if err == nil {
				t.Fatalf("New accepted it: %v", s)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	t.Parallel()
	s := newSigner(t, []Key{seededKey(1)}, Options{})
	tests := []struct {
		name string
		c    Claims
	}{
		{"empty session id", Claims{ExpiresAt: t0.Add(time.Hour)}},
		{"negative generation", Claims{SessionID: "s", Generation: -1, ExpiresAt: t0.Add(time.Hour)}},
		{"no expiry", Claims{SessionID: "s"}},
		{"expiry before issue", Claims{SessionID: "s", IssuedAt: t0, ExpiresAt: t0.Add(-time.Second)}},
		{"expiry at issue", Claims{SessionID: "s", ExpiresAt: t0}},
		{"longer than MaxTokenBytes", Claims{SessionID: strings.Repeat("s", MaxTokenBytes), ExpiresAt: t0.Add(time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if raw, err := s.Sign(tt.c); err == nil {
				t.Errorf("Sign accepted it: %s", raw)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := newSigner(t, []Key{seededKey(1), seededKey(2)}, Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			c := validClaims()
			c.Generation = int64(i)
			raw, err := s.Sign(c)
			if err != nil {
				t.Error(err)
				return
			}
			if got, err := s.Verify(raw); err != nil || got.Generation != int64(i) {
				t.Errorf("Verify: %+v, %v", got, err)
			}
			_ = s.JWKS()
		})
	}
	wg.Wait()
}

// TestPackageDoc keeps the package documented.
func TestPackageDoc(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(gotoken.NewFileSet(), "token.go", nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil || !strings.HasPrefix(f.Doc.Text(), "Package token ") {
		t.Error(`token.go has no package doc comment starting "Package token "`)
	}
}
