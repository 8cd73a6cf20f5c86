// Package token signs and verifies the session tokens the proxy hands to
// headsets: compact JWTs signed with Ed25519 (alg "EdDSA") that carry a
// session id and the generation of the session that issued them.
//
// A token only says which session it belongs to; whether that session is
// still live is decided elsewhere, against the database. This package answers
// the question before that one: did we sign these exact bytes, for us, and
// are they still in date?
//
// Verification follows RFC 8725 (JWT Best Current Practices) because the
// tokens come from clients that may be hostile: the algorithm is pinned, the
// key is chosen only among the keys loaded at start, every header this package
// does not write is refused, and the input is bounded before it is parsed.
//
// A Signer holds an ordered key set: the first key signs, every key verifies.
// Rotation is therefore: put the new key first and keep the old one until the
// tokens it signed have expired, then drop it. JWKS serves the public halves
// so that a backend can check a token itself.
package token

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenBytes bounds the length of a token Verify will look at. A token we
// sign is a few hundred bytes; refusing anything longer before decoding keeps
// the memory and CPU a hostile client can make us spend per request small and
// fixed. Sign refuses to produce a longer token, so it never issues one that
// Verify would reject.
const MaxTokenBytes = 4096

// algorithm is the only JWS algorithm signed and accepted.
const algorithm = "EdDSA"

// ErrInvalid is wrapped by every verification failure. Its text, and the
// reason after it ("invalid token: bad signature"), is meant for logs; a
// client should only ever learn that its token was not accepted.
var ErrInvalid = errors.New("invalid token")

// ErrExpired is the failure for a token that is authentic and well formed but
// past its "exp". It wraps ErrInvalid, so callers that only care whether a
// token is usable check ErrInvalid, and those that count expiries apart check
// ErrExpired.
var ErrExpired = fmt.Errorf("%w: expired", ErrInvalid)

// The reasons a token is refused. Each wraps ErrInvalid. They are unexported:
// callers act the same on all of them, only the log line differs. Their text
// is fixed, never taken from the token, so a client cannot write into our logs.
var (
	errTooLong        = reason("longer than MaxTokenBytes")
	errMalformed      = reason("malformed")
	errAlgorithm      = reason("algorithm not allowed")
	errHeader         = reason("header not allowed")
	errType           = reason(`typ is not "JWT"`)
	errNoKeyID        = reason("missing key id")
	errUnknownKeyID   = reason("unknown key id")
	errSignature      = reason("bad signature")
	errNoExpiry       = reason("missing exp")
	errNoIssuer       = reason("missing iss")
	errIssuer         = reason("wrong issuer")
	errAudience       = reason("missing or wrong audience")
	errNoSession      = reason("missing sid")
	errGeneration     = reason("missing or negative gen")
	errIssuedInFuture = reason("issued in the future")
	errNotYetValid    = reason("not valid yet")
	errDate           = reason("exp, iat or nbf not whole seconds as a number")
	errClaimName      = reason("claim named twice or in another case")
)

func reason(why string) error { return fmt.Errorf("%w: %s", ErrInvalid, why) }

// Claims are what a token says about its session.
type Claims struct {
	SessionID  string    // "sid": the session the token belongs to; never empty
	Generation int64     // "gen": which refresh of the session issued the token; never negative
	Subject    string    // "sub": the user id ("" allowed)
	DeviceID   string    // "dev"
	IssuedAt   time.Time // "iat"; Sign uses the Signer's clock when zero
	ExpiresAt  time.Time // "exp" (required)
}

// Options configure a Signer.
type Options struct {
	// Issuer is written as "iss" and must match exactly on Verify, so a token
	// issued by another system that happens to share a key is refused.
	// Required.
	Issuer string

	// Audience, when non-empty, is written as "aud" and required on Verify.
	Audience string

	// Now is the clock for "iat" and for checking "exp" and "iat". If nil,
	// time.Now is used.
	Now func() time.Time

	// Leeway is the clock skew tolerated on "exp", "iat" and "nbf" between
	// replicas. Default 0.
	Leeway time.Duration
}

// Signer signs tokens with the first of its keys and verifies tokens signed by
// any of them. It is safe for concurrent use.
type Signer struct {
	signing Key
	keys    []verifyKey
	byID    map[string]ed25519.PublicKey
	opts    Options
	parser  *jwt.Parser
	jwks    []byte
}

type verifyKey struct {
	id     string
	public ed25519.PublicKey
}

// New returns a Signer for keys; keys[0] signs. It refuses an empty set, a key
// that is not a well-formed Ed25519 key, an empty or duplicate key id, and a
// missing issuer.
func New(keys []Key, opts Options) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("token: no signing keys")
	}
	if opts.Issuer == "" {
		return nil, errors.New("token: issuer is required")
	}
	if opts.Leeway < 0 {
		return nil, fmt.Errorf("token: negative leeway %s", opts.Leeway)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Signer{
		signing: keys[0],
		keys:    make([]verifyKey, 0, len(keys)),
		byID:    make(map[string]ed25519.PublicKey, len(keys)),
		opts:    opts,
	}
	for i, k := range keys {
		if len(k.Private) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("token: key %d: not an Ed25519 private key", i+1)
		}
		// An ed25519.PrivateKey is seed||public. A key whose public half does
		// not belong to its seed would sign tokens that nobody can verify.
		if !bytes.Equal(ed25519.NewKeyFromSeed(k.Private.Seed()), k.Private) {
			return nil, fmt.Errorf("token: key %d: public half does not match the private key", i+1)
		}
		if k.ID == "" {
			return nil, fmt.Errorf("token: key %d: empty key id", i+1)
		}
		if _, dup := s.byID[k.ID]; dup {
			return nil, fmt.Errorf("token: key %d: duplicate key id %q", i+1, k.ID)
		}
		pub := publicOf(k.Private)
		s.byID[k.ID] = pub
		s.keys = append(s.keys, verifyKey{id: k.ID, public: pub})
	}
	jwks, err := marshalJWKS(s.keys)
	if err != nil {
		return nil, fmt.Errorf("token: encode JWKS: %w", err)
	}
	s.jwks = jwks

	popts := []jwt.ParserOption{
		// Pin the algorithm (RFC 8725 section 3.1): "none", HS256 keyed with
		// our public key bytes, RS256/ES256 with some other key are refused
		// before any key is looked at.
		jwt.WithValidMethods([]string{algorithm}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(opts.Issuer),
		// A token dated in the future was made with a wrong clock or forged
		// to outlive a rotation; only skew up to Leeway is tolerated.
		jwt.WithIssuedAt(),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(opts.Now),
		// Strict base64 rejects non-zero trailing bits, so a signature has
		// exactly one textual form. Padding stays disallowed (the default):
		// RFC 7515 compact serialisation has none.
		jwt.WithStrictDecoding(),
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	s.parser = jwt.NewParser(popts...)
	return s, nil
}

// sessionClaims is the JSON form of Claims.
type sessionClaims struct {
	SessionID  string `json:"sid"`
	Generation *int64 `json:"gen"` // a pointer so that a missing "gen" is not read as 0
	DeviceID   string `json:"dev,omitempty"`
	jwt.RegisteredClaims
}

// knownClaims are the claim names this package reads, spelled as Sign
// writes them.
var knownClaims = [...]string{"sid", "gen", "dev", "iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

// maxDate bounds exp, iat and nbf: the last second of the year 9999. Past
// it, the library's float-to-time conversion overflows and a date far in
// the future reads as one in the past.
const maxDate = 253402300799

// UnmarshalJSON decodes the payload strictly, so that a token has one
// reading, the same for us as for any other parser a backend might use:
//
//   - exp, iat and nbf are JSON numbers of whole seconds from 0 to maxDate.
//     The library would also take a quoted number ("exp":"1999999999"),
//     which json.Number accepts, or a fraction or exponent, which Sign never
//     writes.
//   - no member is named twice: encoding/json keeps the last, other
//     parsers the first.
//   - no member names a claim we read in another case ("EXP", "Sid", or
//     with a Unicode fold such as "ſid"): encoding/json matches struct
//     fields case-insensitively, so these would set the claim under a name
//     no other parser reads as it.
//
// The checks run on the payload before its signature is checked (the
// library decodes first), so they are bounded by MaxTokenBytes like the
// rest of the parsing.
func (c *sessionClaims) UnmarshalJSON(data []byte) error {
	if err := checkClaimsJSON(data); err != nil {
		return err
	}
	// A type without this method, so that decoding it does not recurse.
	type plain sessionClaims
	return json.Unmarshal(data, (*plain)(c))
}

// checkClaimsJSON applies the rules of sessionClaims.UnmarshalJSON to the
// members of the payload object. Anything but an object is left to the
// struct decoding to refuse (or, for null, to Validate).
func checkClaimsJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	seen := make(map[string]bool, 8)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := t.(string) // object keys are always strings
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return err
		}
		if seen[name] {
			return errClaimName
		}
		seen[name] = true
		for _, known := range knownClaims {
			if name != known && strings.EqualFold(name, known) {
				return errClaimName
			}
		}
		switch name {
		case "exp", "iat", "nbf":
			if !wholeSeconds(value) {
				return errDate
			}
		}
	}
	return nil
}

// wholeSeconds reports whether v is a JSON number written as digits only
// (no sign, fraction or exponent; JSON forbids leading zeros) and at most
// maxDate.
func wholeSeconds(v json.RawMessage) bool {
	if len(v) == 0 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return err == nil && n <= maxDate
}

// Validate implements jwt.ClaimsValidator. The parser calls it only after the
// signature has verified, together with its own checks of exp, iat and iss.
// Presence of exp and iss is checked here too so that the reason logged names
// the claim that is missing.
func (c *sessionClaims) Validate() error {
	switch {
	case c.ExpiresAt == nil:
		return errNoExpiry
	case c.Issuer == "":
		return errNoIssuer
	case c.SessionID == "":
		return errNoSession
	case c.Generation == nil || *c.Generation < 0:
		return errGeneration
	}
	return nil
}

// Sign returns a token for c, signed with the first key. The header is
// {"alg":"EdDSA","kid":<first key's id>,"typ":"JWT"}. Times are kept to the
// second.
func (s *Signer) Sign(c Claims) (string, error) {
	if c.SessionID == "" {
		return "", errors.New("token: sign: empty session id")
	}
	if c.Generation < 0 {
		return "", fmt.Errorf("token: sign: negative generation %d", c.Generation)
	}
	if c.ExpiresAt.IsZero() {
		return "", errors.New("token: sign: expiry is required")
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = s.opts.Now()
	}
	if !c.ExpiresAt.After(iat) {
		return "", errors.New("token: sign: expiry is not after issue time")
	}
	gen := c.Generation
	claims := &sessionClaims{
		SessionID:  c.SessionID,
		Generation: &gen,
		DeviceID:   c.DeviceID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.opts.Issuer,
			Subject:   c.Subject,
			IssuedAt:  jwt.NewNumericDate(iat),
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
		},
	}
	if s.opts.Audience != "" {
		claims.Audience = jwt.ClaimStrings{s.opts.Audience}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = s.signing.ID
	raw, err := t.SignedString(s.signing.Private)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	if len(raw) > MaxTokenBytes {
		return "", fmt.Errorf("token: sign: token of %d bytes exceeds MaxTokenBytes (%d)", len(raw), MaxTokenBytes)
	}
	return raw, nil
}

// Verify checks that raw is a token signed by one of the Signer's keys, for
// its issuer (and audience), in date, and returns its claims. Every failure
// wraps ErrInvalid; an expired token fails with ErrExpired and still returns
// its claims (its signature and every other check passed), so that the
// caller can clean up the session it names.
//
// When a token fails for several reasons, the reason reported is the first of:
// the encoding, the header, the signature, a missing or wrong claim, then the
// dates. "Expired" therefore means a token that would otherwise be good.
func (s *Signer) Verify(raw string) (Claims, error) {
	if len(raw) > MaxTokenBytes {
		return Claims{}, errTooLong
	}
	// Compact JWS is base64url segments joined by dots (RFC 7515 section 7.1).
	// The base64 decoder silently skips CR and LF, so without this check
	// "a.b\n.c" would verify as "a.b.c": one token, many spellings, each a
	// different key for any cache built on the token's bytes.
	if !compactAlphabet(raw) {
		return Claims{}, errMalformed
	}
	var sc sessionClaims
	if _, err := s.parser.ParseWithClaims(raw, &sc, s.keyFor); err != nil {
		err = classify(err)
		if errors.Is(err, ErrExpired) {
			return claimsOf(sc), err
		}
		return Claims{}, err
	}
	return claimsOf(sc), nil
}

func claimsOf(sc sessionClaims) Claims {
	var gen int64
	if sc.Generation != nil {
		gen = *sc.Generation
	}
	return Claims{
		SessionID:  sc.SessionID,
		Generation: gen,
		Subject:    sc.Subject,
		DeviceID:   sc.DeviceID,
		IssuedAt:   timeOf(sc.IssuedAt),
		ExpiresAt:  timeOf(sc.ExpiresAt),
	}
}

// allowedHeaders are the only header parameters a token may carry: those Sign
// writes. Anything else means we did not sign it. In particular "jku", "jwk",
// "x5u" and "x5c" (a key, or where to fetch one, chosen by the sender) are
// refused rather than ignored: a token naming its own key is an attack, and
// refusing makes it visible in the logs. "crit" and "b64" (RFC 7797, payload
// not encoded) would change how the token must be read, so they go too.
var allowedHeaders = map[string]bool{"alg": true, "typ": true, "kid": true}

// keyFor is the jwt.Keyfunc. It runs after the parser has checked the
// algorithm and before the signature is checked, on a header nobody has
// authenticated yet: it must only select among keys loaded at start.
func (s *Signer) keyFor(t *jwt.Token) (any, error) {
	// Belt and braces on top of WithValidMethods: never hand an Ed25519 key
	// to any other verifier.
	if t.Method != jwt.SigningMethodEdDSA {
		return nil, errAlgorithm
	}
	for name := range t.Header {
		if !allowedHeaders[name] {
			return nil, errHeader
		}
	}
	if typ, ok := t.Header["typ"]; ok && typ != "JWT" {
		return nil, errType
	}
	kid, ok := t.Header["kid"].(string)
	if !ok || kid == "" {
		return nil, errNoKeyID
	}
	// An exact map lookup: the kid is never a path, a URL or a query, so a
	// kid of "../../etc/passwd" or "' OR 1=1 --" is just an unknown id.
	pub, ok := s.byID[kid]
	if !ok {
		return nil, errUnknownKeyID
	}
	return pub, nil
}

// claimReasons are checked in order against the error of a token whose
// signature verified; the first match is reported.
var claimReasons = []struct {
	jwtErr error
	reason error
}{
	{jwt.ErrTokenInvalidIssuer, errIssuer},
	{jwt.ErrTokenInvalidAudience, errAudience},
	// Presence of exp and iss is checked by sessionClaims.Validate and
	// matched before this table, so a missing required claim left here can
	// only be "aud".
	{jwt.ErrTokenRequiredClaimMissing, errAudience},
	{jwt.ErrTokenUsedBeforeIssued, errIssuedInFuture},
	{jwt.ErrTokenNotValidYet, errNotYetValid},
	{jwt.ErrTokenExpired, ErrExpired},
}

// classify turns an error of the jwt parser into one of our reasons, keeping
// the parser's error as a cause for errors.Is.
func classify(err error) error {
	// Our own reasons, from keyFor and sessionClaims.Validate, come first:
	// they are the most precise.
	for _, r := range []error{
		errAlgorithm, errHeader, errType, errNoKeyID, errUnknownKeyID,
		errNoExpiry, errNoIssuer, errNoSession, errGeneration, errDate, errClaimName,
	} {
		if errors.Is(err, r) {
			return &verifyError{reason: r, cause: err}
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return &verifyError{reason: errMalformed, cause: err}
	case errors.Is(err, jwt.ErrEd25519Verification),
		errors.Is(err, jwt.ErrInvalidKey),
		errors.Is(err, jwt.ErrInvalidKeyType):
		return &verifyError{reason: errSignature, cause: err}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid),
		errors.Is(err, jwt.ErrTokenUnverifiable):
		// With the key function's errors handled above, these are left
		// only for an "alg" outside WithValidMethods, unknown or absent.
		return &verifyError{reason: errAlgorithm, cause: err}
	}
	for _, c := range claimReasons {
		if errors.Is(err, c.jwtErr) {
			return &verifyError{reason: c.reason, cause: err}
		}
	}
	return &verifyError{reason: errMalformed, cause: err}
}

// verifyError reads as its reason only: the parser's message can quote the
// token (its "alg", say), and the token is the client's to write, not our
// logs'. The cause is still there for errors.Is.
type verifyError struct {
	reason error
	cause  error
}

func (e *verifyError) Error() string   { return e.reason.Error() }
func (e *verifyError) Unwrap() []error { return []error{e.reason, e.cause} }

// compactAlphabet reports whether s has only base64url characters and dots.
func compactAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func timeOf(d *jwt.NumericDate) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.UTC()
}

// JWKS returns the public keys as a JWK Set (RFC 7517), in key order, for
// /.well-known/jwks.json. It holds only public parts ("x"), never "d". The
// slice is the caller's to keep.
func (s *Signer) JWKS() []byte {
	return bytes.Clone(s.jwks)
}
