package record_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
)

func TestValidateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{"simple", "test-123", true},
		{"slashes and spaces", "sessions/2024 run 1", true},
		{"256 ascii", strings.Repeat("k", 256), true},
		// Length counts characters, not bytes: 256 four-byte characters fit.
		{"256 runes of 4 bytes", strings.Repeat("😀", 256), true},
		{"empty", "", false},
		{"257 characters", strings.Repeat("k", 257), false},
		// PostgreSQL refuses NUL in text; refusing it here turns a 500 into a 400.
		{"NUL", "a\x00b", false},
		{"newline", "a\nb", false},
		{"invalid UTF-8", "a\xffb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := record.ValidateKey(tt.key)
			if tt.ok && err != nil {
				t.Fatalf("ValidateKey(%q) = %v, want nil", tt.key, err)
			}
			if !tt.ok && !errors.Is(err, record.ErrInvalid) {
				t.Fatalf("ValidateKey(%q) = %v, want ErrInvalid", tt.key, err)
			}
		})
	}
}

func TestValidateDeviceID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"", strings.Repeat("d", 257), "d\x00"} {
		if err := record.ValidateDeviceID(id); !errors.Is(err, record.ErrInvalid) {
			t.Errorf("ValidateDeviceID(%q) = %v, want ErrInvalid", id, err)
		}
	}
	if err := record.ValidateDeviceID("VR-DEVICE-002"); err != nil {
		t.Errorf("ValidateDeviceID(VR-DEVICE-002) = %v", err)
	}
}

func TestValidatePrefix(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", "a%_", strings.Repeat("p", 1000)} {
		if err := record.ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v, want nil", p, err)
		}
	}
	if err := record.ValidatePrefix("a\x00"); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("ValidatePrefix(NUL) = %v, want ErrInvalid", err)
	}
}

func TestRecordValidate(t *testing.T) {
	t.Parallel()
	valid := record.Record{DeviceID: "d", Key: "k", Data: json.RawMessage(`{"a":1}`)}
	tests := []struct {
		name   string
		modify func(*record.Record)
		ok     bool
	}{
		{"valid", func(*record.Record) {}, true},
		{"data null", func(r *record.Record) { r.Data = json.RawMessage("null") }, true},
		{"meta object", func(r *record.Record) { r.Meta = json.RawMessage(` {"v":2}`) }, true},
		{"data missing", func(r *record.Record) { r.Data = nil }, false},
		{"meta array", func(r *record.Record) { r.Meta = json.RawMessage(`[1]`) }, false},
		{"meta string", func(r *record.Record) { r.Meta = json.RawMessage(`"x"`) }, false},
		{"no device", func(r *record.Record) { r.DeviceID = "" }, false},
		{"no key", func(r *record.Record) { r.Key = "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := valid
			tt.modify(&r)
			err := r.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, record.ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
		})
	}
}

// Validate refuses the JSON that PostgreSQL's jsonb cannot hold, so that
// every store refuses it alike (checked against PostgreSQL itself in
// internal/postgres TestRecordRulesMatchJSONB).
func TestValidateJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		data string
		ok   bool
	}{
		{`{"a": [1, "x", null, true]}`, true},
		{`"\\u0000"`, true}, // an escaped backslash, then text
		{`"\ud83d\ude00"`, true},
		{`1e131071`, true},
		{`1e-16383`, true},
		{`0e1000000000`, true},
		{`-12.5E+3`, true},
		{`{nope`, false},
		{`1 2`, false},
		{"\"\xff\"", false},
		{`"\u0000"`, false},
		{`{"k\u0000": 1}`, false},
		{`"\ud800"`, false},
		{`"\udc00"`, false},
		{`"\ud800\u0041"`, false},
		{`1e131072`, false},
		{`1e-16384`, false},
		{`0e1073741823`, false},
		{`1e99999999999999999999`, false},
	}
	for _, tt := range tests {
		r := record.Record{DeviceID: "d", Key: "k", Data: json.RawMessage(tt.data)}
		err := r.Validate()
		if tt.ok && err != nil {
			t.Errorf("Validate(data %s) = %v, want nil", tt.data, err)
		}
		if !tt.ok && !errors.Is(err, record.ErrInvalid) {
			t.Errorf("Validate(data %s) = %v, want ErrInvalid", tt.data, err)
		}
		r = record.Record{DeviceID: "d", Key: "k", Data: json.RawMessage(`1`), Meta: json.RawMessage(`{"m": ` + tt.data + `}`)}
		if err := r.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(meta {\"m\": %s}) = %v, want ok=%v", tt.data, err, tt.ok)
		}
	}
}
