package record

import (
	"encoding/json"
	"unicode/utf8"
)

// Limits of PostgreSQL's numeric type, which jsonb uses for every number.
// A number is refused when its most significant digit is more than
// maxNumberWeight places left of the decimal point, when it has more than
// maxNumberScale digits right of it (as written, after the exponent), or
// when its exponent alone is beyond maxNumberExponent.
const (
	maxNumberWeight   = 131071      // 1e131071 fits, 1e131072 does not
	maxNumberScale    = 16383       // 1e-16383 fits, 1e-16384 does not
	maxNumberExponent = 1<<31/2 - 1 // INT_MAX/2: PostgreSQL's bound on the exponent
	maxExponentDigits = 10          // more digits than this is out of range anyway
)

// checkJSON checks that raw is JSON that every store keeps unchanged in
// meaning: valid JSON in valid UTF-8, no \u0000 and no unpaired UTF-16
// surrogate escape in a string, and every number within PostgreSQL's
// numeric range. These are the values PostgreSQL's jsonb refuses; the
// embedded store could hold them, but refusing them everywhere keeps the two
// stores answering alike and lets records move from one to the other.
func checkJSON(what string, raw []byte) error {
	if !json.Valid(raw) {
		return Invalid("%s is not valid JSON", what)
	}
	if !utf8.Valid(raw) {
		return Invalid("%s is not valid UTF-8", what)
	}
	for i := 0; i < len(raw); {
		switch c := raw[i]; {
		case c == '"':
			end, err := checkString(raw, i+1)
			if err != nil {
				return err
			}
			i = end
		case c == '-' || '0' <= c && c <= '9':
			// In valid JSON a number ends where these bytes end.
			end := i + 1
			for end < len(raw) && isNumberByte(raw[end]) {
				end++
			}
			if !numberFits(raw[i:end]) {
				return Invalid("the JSON contains a number too large or too small to store")
			}
			i = end
		default:
			i++
		}
	}
	return nil
}

// checkString checks the string whose contents start at raw[i] (after the
// opening quote) and returns the index after its closing quote.
func checkString(raw []byte, i int) (int, error) {
	for i < len(raw) {
		switch raw[i] {
		case '"':
			return i + 1, nil
		case '\\':
			if raw[i+1] != 'u' {
				i += 2
				continue
			}
			r := hex4(raw[i+2 : i+6])
			i += 6
			switch {
			case r == 0:
				return 0, Invalid("the JSON contains a character the database cannot store (such as \\u0000)")
			case 0xDC00 <= r && r <= 0xDFFF:
				return 0, errSurrogate
			case 0xD800 <= r && r <= 0xDBFF:
				// A high surrogate must be followed by a low one.
				if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return 0, errSurrogate
				}
				if low := hex4(raw[i+2 : i+6]); low < 0xDC00 || low > 0xDFFF {
					return 0, errSurrogate
				}
				i += 6
			}
		default:
			i++
		}
	}
	return i, nil // not reached for valid JSON
}

var errSurrogate = &InvalidError{Reason: "the JSON contains an unpaired UTF-16 surrogate escape (such as \\ud800)"}

// hex4 decodes four hex digits, already checked by json.Valid.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// numberFits reports whether the JSON number n (checked by json.Valid) is
// within PostgreSQL's numeric range, computed the way its numeric_in does.
func numberFits(n []byte) bool {
	if n[0] == '-' {
		n = n[1:]
	}
	intEnd := 0
	for intEnd < len(n) && '0' <= n[intEnd] && n[intEnd] <= '9' {
		intEnd++
	}
	intPart, frac, rest := n[:intEnd], []byte(nil), n[intEnd:]
	if len(rest) > 0 && rest[0] == '.' {
		end := 1
		for end < len(rest) && '0' <= rest[end] && rest[end] <= '9' {
			end++
		}
		frac, rest = rest[1:end], rest[end:]
	}
	exp := 0
	if len(rest) > 0 { // e or E, an optional sign, digits
		digits, negative := rest[1:], false
		if digits[0] == '+' || digits[0] == '-' {
			negative = digits[0] == '-'
			digits = digits[1:]
		}
		for len(digits) > 1 && digits[0] == '0' {
			digits = digits[1:]
		}
		if len(digits) > maxExponentDigits {
			return false
		}
		for _, c := range digits {
			exp = exp*10 + int(c-'0')
		}
		if exp >= maxNumberExponent {
			return false
		}
		if negative {
			exp = -exp
		}
	}
	if max(len(frac)-exp, 0) > maxNumberScale {
		return false
	}
	// The place of the most significant digit; zero has none.
	for k, c := range intPart {
		if c != '0' {
			return len(intPart)-1-k+exp <= maxNumberWeight
		}
	}
	for k, c := range frac {
		if c != '0' {
			return -(k+1)+exp <= maxNumberWeight
		}
	}
	return true
}
