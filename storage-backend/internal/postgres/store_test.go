package postgres_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/storage-backend/internal/postgres"
	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
	"github.com/authsidecar/authsidecar/storage-backend/internal/storetest"
)

// newStore returns a store on a migrated schema of the test's own.
func newStore(t *testing.T, now func() time.Time) *postgres.Store {
	t.Helper()
	pool := testkit.Pool(t)
	if _, err := postgres.Migrate(context.Background(), pool, postgres.Up); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	s := postgres.NewStore(pool)
	s.Now = now
	return s
}

// TestStore runs the suite every store passes (package storetest).
func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, now func() time.Time) record.Store {
		return newStore(t, now)
	})
}

// jsonb hands JSON back in its own form: one space after ':' and ',', keys
// ordered shorter first, the last of duplicate keys only, numbers in
// numeric's spelling. The suite compares JSON by meaning; this pins the
// bytes PostgreSQL returns.
func TestJSONBForm(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, time.Now)

	for in, want := range map[string]string{
		`[1,2,3]`:                   `[1, 2, 3]`,
		`{"nested":{"a":[1,null]}}`: `{"nested": {"a": [1, null]}}`,
		`{"bb": 1, "a": 2, "b": 3}`: `{"a": 2, "b": 3, "bb": 1}`,
		`{"a": 1, "a": 2}`:          `{"a": 2}`,
		`1E+2`:                      `100`,
		`"\u00e9"`:                  `"é"`,
	} {
		if _, _, err := s.Put(ctx, record.Record{DeviceID: "dev", Key: "k", Data: json.RawMessage(in), Meta: json.RawMessage(`{"m":[1,2]}`)}); err != nil {
			t.Fatalf("Put(%s): %v", in, err)
		}
		got, err := s.Get(ctx, "dev", "k")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if string(got.Data) != want {
			t.Errorf("Data for %s = %s, want %s", in, got.Data, want)
		}
		if string(got.Meta) != `{"m": [1, 2]}` {
			t.Errorf("Meta = %s, want {\"m\": [1, 2]}", got.Meta)
		}
	}
}

// record.Validate refuses, before any store sees it, the JSON that jsonb
// cannot hold, so that the embedded store refuses it too. This checks the
// rule against PostgreSQL itself, on both sides of each limit.
func TestRecordRulesMatchJSONB(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testkit.Pool(t)

	for _, data := range []string{
		`1e131071`, `1e131072`, `9.9e131071`, `-1e131072`,
		`1e-16383`, `1e-16384`, `1.5e-16382`, `1.55e-16382`, `0.0e16390`,
		`0e-16383`, `0e-16384`, `0e1073741822`, `0e1073741823`, `-0e-1073741823`,
		`1e99999999999999999999`, `1e999999`, `-1e-999999`,
		`123456789012345678901234567890e131000`, `123456789012345678901234567890e131042`,
		strings.Repeat("9", 131072), strings.Repeat("9", 131073),
		"0." + strings.Repeat("1", 16383), "0." + strings.Repeat("1", 16384),
		`"\u0000"`, `{"\u0000": 1}`, `"\\u0000"`, `"\u0001"`,
		`"\ud800"`, `"\udc00"`, `"\ud800\udc00"`, `"\ud800\u0041"`, `"\ud800\ud800"`, `"\udbff\udfff"`, `"\uDBFF\uDFFF"`,
		`"\ud800x"`, `["\ud800"]`, `"\ud800\\"`,
		"\"a\xffb\"", `{nope`, `1 2`,
	} {
		_, dbErr := pool.Exec(ctx, `SELECT $1::text::jsonb`, data)
		err := record.Record{DeviceID: "d", Key: "k", Data: json.RawMessage(data)}.Validate()
		if (err == nil) != (dbErr == nil) {
			t.Errorf("%.60s: Validate = %v, PostgreSQL = %v; want both to accept or both to refuse", data, err, dbErr)
		}
	}
}
