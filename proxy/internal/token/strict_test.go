package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestStrictClaims signs hand-written payloads with the verifier's own key,
// so that the signature, the header and every claim's value are good and only
// how the payload spells them differs. Each refused token has an accepted
// twin beside it that spells the same claims the plain way, so a refusal is
// the strict decoding at work and nothing else.
func TestStrictClaims(t *testing.T) {
	t.Parallel()
	k := seededKey(1)
	s := newSigner(t, []Key{k}, Options{})
	header := seg(t, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": k.ID})
	sign := func(payload string) string {
		input := header + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
		return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(k.Private, []byte(input)))
	}
	iat, exp, nbf := t0.Unix(), t0.Add(24*time.Hour).Unix(), t0.Add(-time.Minute).Unix()
	// payload is what Sign writes for validClaims, with the members given
	// in place of iat and exp.
	payload := func(dates string) string {
		return `{"sid":"sess-7f3a","gen":3,"sub":"user-42","dev":"VR-DEVICE-002","iss":"` + testIssuer + `",` + dates + `}`
	}
	plain := fmt.Sprintf(`"iat":%d,"exp":%d`, iat, exp)

	accepted := []struct{ name, payload string }{
		{"as Sign writes it", payload(plain)},
		{"with nbf", payload(plain + fmt.Sprintf(`,"nbf":%d`, nbf))},
		{"exp spelled with a JSON escape", payload(fmt.Sprintf(`"iat":%d,"\u0065xp":%d`, iat, exp))},
		{"white space around the numbers", payload(fmt.Sprintf(`"iat": %d ,"exp":	%d`, iat, exp))},
		{"an unknown claim in capitals", payload(plain + `,"X-Extra":"1"`)},
	}
	for _, tt := range accepted {
		t.Run("accepted/"+tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := s.Verify(sign(tt.payload))
			if err != nil {
				t.Fatalf("Verify(%s): %v; the refusals below would prove nothing", tt.payload, err)
			}
			if c != validClaims() {
				t.Fatalf("claims %+v, want %+v", c, validClaims())
			}
		})
	}

	refused := []struct {
		name, payload string
		want          error
	}{
		{"exp a quoted number", payload(fmt.Sprintf(`"iat":%d,"exp":"%d"`, iat, exp)), errDate},
		{"exp a quoted number far ahead", payload(fmt.Sprintf(`"iat":%d,"exp":"1999999999"`, iat)), errDate},
		{"iat a quoted number", payload(fmt.Sprintf(`"iat":"%d","exp":%d`, iat, exp)), errDate},
		{"nbf a quoted number", payload(plain + fmt.Sprintf(`,"nbf":"%d"`, nbf)), errDate},
		{"exp with a fraction", payload(fmt.Sprintf(`"iat":%d,"exp":%d.5`, iat, exp)), errDate},
		{"exp with an exponent", payload(fmt.Sprintf(`"iat":%d,"exp":%de0`, iat, exp)), errDate},
		{"exp 1e300", payload(fmt.Sprintf(`"iat":%d,"exp":1e300`, iat)), errDate},
		{"exp beyond the year 9999", payload(fmt.Sprintf(`"iat":%d,"exp":%d`, iat, maxDate+1)), errDate},
		{"exp beyond int64", payload(fmt.Sprintf(`"iat":%d,"exp":99999999999999999999`, iat)), errDate},
		{"iat negative", payload(fmt.Sprintf(`"iat":-1,"exp":%d`, exp)), errDate},
		{"exp null", payload(fmt.Sprintf(`"iat":%d,"exp":null`, iat)), errDate},
		{"exp true", payload(fmt.Sprintf(`"iat":%d,"exp":true`, iat)), errDate},
		{"exp an array", payload(fmt.Sprintf(`"iat":%d,"exp":[%d]`, iat, exp)), errDate},
		{"exp an object", payload(fmt.Sprintf(`"iat":%d,"exp":{"n":%d}`, iat, exp)), errDate},
		{"exp twice, the quoted one last", payload(plain + fmt.Sprintf(`,"exp":"%d"`, exp)), errClaimName},
		{"exp twice, both numbers", payload(plain + fmt.Sprintf(`,"exp":%d`, exp+60)), errClaimName},
		{"sid twice", payload(plain + `,"sid":"someone-elses"`), errClaimName},
		{"an unknown member twice", payload(plain + `,"x":1,"x":2`), errClaimName},
		{"EXP in capitals beside exp", payload(plain + fmt.Sprintf(`,"EXP":%d`, exp+60)), errClaimName},
		{"Exp instead of exp", payload(fmt.Sprintf(`"iat":%d,"Exp":%d`, iat, exp)), errClaimName},
		{"Sid beside sid", payload(plain + `,"Sid":"someone-elses"`), errClaimName},
		{"long s folding to sid", payload(plain + `,"ſid":"someone-elses"`), errClaimName},
		{"ISS beside iss", payload(plain + `,"ISS":"someone-else"`), errClaimName},
		{"GEN beside gen", payload(plain + `,"GEN":0`), errClaimName},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := s.Verify(sign(tt.payload))
			if err == nil {
				t.Fatalf("Verify accepted %s: %+v", tt.payload, c)
			}
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, tt.want) {
				t.Fatalf("Verify(%s): %q, want reason %q", tt.payload, err, tt.want)
			}
			if c != (Claims{}) {
				t.Fatalf("claims returned with an error: %+v", c)
			}
			if strings.Contains(err.Error(), "someone") || len(err.Error()) > 64 {
				t.Fatalf("error text %q quotes the token or is long", err)
			}
		})
	}
}
