// Package record defines what the storage backend stores: a JSON record that
// belongs to one device and is found by its key. It also holds the rules a
// record must follow and the errors a caller of a Store can act on, so that
// the HTTP layer and every store implementation agree on them.
package record

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxKeyLength is the longest key, in characters (Unicode code points).
const MaxKeyLength = 256

// MaxDeviceIDLength is the longest device id, in characters. Device ids come
// from the proxy; the limit only keeps an index entry within PostgreSQL's
// bounds whatever a misconfigured proxy sends.
const MaxDeviceIDLength = 256

// Errors a caller can act on. Stores wrap them, so test with errors.Is.
var (
	// ErrNotFound means the device has no record with that key.
	ErrNotFound = errors.New("record not found")
	// ErrInvalid means the record, key or prefix breaks a rule. The error
	// that wraps it is an *InvalidError saying which rule.
	ErrInvalid = errors.New("invalid record")
	// ErrUnavailable means the store could not be reached or did not
	// answer (a database restarting, a connection lost): nothing the
	// request did is known to have happened, and it may be retried.
	ErrUnavailable = errors.New("store unavailable")
)

// InvalidError says which rule a record, key or prefix breaks. Its Reason is
// written for the client and contains nothing from inside the server.
type InvalidError struct {
	Reason string
}

func (e *InvalidError) Error() string { return e.Reason }

// Is makes errors.Is(err, ErrInvalid) true for every *InvalidError.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Invalid returns an *InvalidError whose reason is formatted like fmt.Sprintf.
func Invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// Record is one stored JSON document.
type Record struct {
	DeviceID string
	Key      string
	// Data is any JSON value, including null.
	Data json.RawMessage
	// Meta is a JSON object. Empty (nil) means "none" and is stored as {}.
	Meta      json.RawMessage
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Store keeps records. Every method works within one device: no method
// reads, lists or deletes a record of another device.
type Store interface {
	// Put stores r under (r.DeviceID, r.Key), replacing the record there if
	// any, and returns the stored record (with its timestamps) and whether
	// it was created (true) or replaced (false). When Put returns without
	// error the record is committed.
	Put(ctx context.Context, r Record) (stored Record, created bool, err error)
	// Get returns the device's record with that key, or ErrNotFound.
	Get(ctx context.Context, deviceID, key string) (Record, error)
	// List returns up to limit of the device's records whose key starts with
	// prefix, ordered by key. Data and Meta are left empty.
	List(ctx context.Context, deviceID, prefix string, limit int) ([]Record, error)
	// Delete removes the device's record with that key, or returns ErrNotFound.
	Delete(ctx context.Context, deviceID, key string) error
}

// Validate checks r before it is stored: device id and key, data present,
// meta an object, and both JSON that every store can keep (see checkJSON).
func (r Record) Validate() error {
	if err := ValidateDeviceID(r.DeviceID); err != nil {
		return err
	}
	if err := ValidateKey(r.Key); err != nil {
		return err
	}
	if len(bytes.TrimSpace(r.Data)) == 0 {
		return Invalid("data is required (null is allowed)")
	}
	if err := checkJSON("data", r.Data); err != nil {
		return err
	}
	if meta := bytes.TrimSpace(r.Meta); len(meta) > 0 {
		if meta[0] != '{' {
			return Invalid("meta must be a JSON object")
		}
		if err := checkJSON("meta", meta); err != nil {
			return err
		}
	}
	return nil
}

// ValidateKey checks a key: 1 to MaxKeyLength characters of valid UTF-8,
// without control characters. Control characters are refused because
// PostgreSQL cannot store NUL in text, and the rest only make keys hard to
// tell apart in logs and URLs.
func ValidateKey(key string) error {
	if key == "" {
		return Invalid("key is required")
	}
	if n := utf8.RuneCountInString(key); n > MaxKeyLength {
		return Invalid("key is %d characters long; the limit is %d", n, MaxKeyLength)
	}
	return checkText("key", key)
}

// ValidatePrefix checks a list prefix. An empty prefix matches every key.
// The same characters as in keys are refused; a prefix longer than a key can
// be is allowed and simply matches nothing.
func ValidatePrefix(prefix string) error {
	return checkText("prefix", prefix)
}

// ValidateDeviceID checks a device id: 1 to MaxDeviceIDLength characters.
func ValidateDeviceID(id string) error {
	if id == "" {
		return Invalid("device id is required")
	}
	if n := utf8.RuneCountInString(id); n > MaxDeviceIDLength {
		return Invalid("device id is %d characters long; the limit is %d", n, MaxDeviceIDLength)
	}
	return checkText("device id", id)
}

func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return Invalid("%s is not valid UTF-8", what)
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return Invalid("%s must not contain control characters", what)
		}
	}
	return nil
}
