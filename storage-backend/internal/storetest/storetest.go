// Package storetest is the one test suite of record.Store: every store
// implementation runs it (the PostgreSQL store against a real server, the
// SQLite store against a file), so that the two keep the same behaviour
// rather than drifting apart. Tests of what only one store has (its
// migrations' locking, the exact text its JSON comes back as) stay with
// that store.
//
// JSON that comes back is compared by meaning, not by bytes: PostgreSQL's
// jsonb rewrites white space, key order and the spelling of numbers, while
// the SQLite store only drops white space.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
)

// Open returns a new, empty store with its schema migrated, of the test's
// own (no other test sees its records), whose times come from now. It
// releases what it opened with t.Cleanup.
type Open func(t *testing.T, now func() time.Time) record.Store

// Run runs the suite against the stores open returns, each test in
// parallel on a store of its own.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		run  func(t *testing.T, open Open)
	}{
		{"PutCreatesThenReplaces", testPutCreatesThenReplaces},
		{"PutKeepsJSONValues", testPutKeepsJSONValues},
		{"PutAcceptsTheLimits", testPutAcceptsTheLimits},
		{"PutRefusesInvalid", testPutRefusesInvalid},
		{"TimesAreUTCMicroseconds", testTimesAreUTCMicroseconds},
		{"GetAndDeleteMissing", testGetAndDeleteMissing},
		{"Delete", testDelete},
		{"List", testList},
		{"ListBytewiseAndLiteral", testListBytewiseAndLiteral},
		{"DeviceIsolation", testDeviceIsolation},
		{"PutConcurrentCreate", testPutConcurrentCreate},
		{"CanceledContext", testCanceledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open)
		})
	}
}

// start is the suite's clock's first time: nanoseconds that the stores must
// round to microseconds.
var start = time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)

func newStore(t *testing.T, open Open) (record.Store, *testkit.Clock) {
	t.Helper()
	c := testkit.NewClock(start)
	return open(t, c.Now), c
}

func put(t *testing.T, s record.Store, device, key, data string) (record.Record, bool) {
	t.Helper()
	r, created, err := s.Put(context.Background(), record.Record{DeviceID: device, Key: key, Data: json.RawMessage(data)})
	if err != nil {
		t.Fatalf("Put(%s, %s): %v", device, key, err)
	}
	return r, created
}

func get(t *testing.T, s record.Store, device, key string) record.Record {
	t.Helper()
	r, err := s.Get(context.Background(), device, key)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", device, key, err)
	}
	return r
}

func testPutCreatesThenReplaces(t *testing.T, open Open) {
	ctx := context.Background()
	s, c := newStore(t, open)

	first, created, err := s.Put(ctx, record.Record{
		DeviceID: "dev-a", Key: "test-123",
		Data: json.RawMessage(`{"score": 10}`), Meta: json.RawMessage(`{"v": 1}`),
	})
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if !created {
		t.Error("first Put: created = false, want true")
	}
	wantTime := c.Now().Truncate(time.Microsecond)
	if !first.CreatedAt.Equal(wantTime) || !first.UpdatedAt.Equal(wantTime) {
		t.Errorf("first Put times = %v / %v, want %v", first.CreatedAt, first.UpdatedAt, wantTime)
	}
	if first.DeviceID != "dev-a" || first.Key != "test-123" {
		t.Errorf("first Put returned %+v", first)
	}

	c.Advance(time.Minute)
	second, created, err := s.Put(ctx, record.Record{
		DeviceID: "dev-a", Key: "test-123", Data: json.RawMessage(`[1, 2, 3]`),
	})
	if err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if created {
		t.Error("second Put: created = true, want false (replaced)")
	}
	if !second.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("CreatedAt moved on replace: %v -> %v", first.CreatedAt, second.CreatedAt)
	}
	if want := first.UpdatedAt.Add(time.Minute); !second.UpdatedAt.Equal(want) {
		t.Errorf("UpdatedAt after replace = %v, want %v", second.UpdatedAt, want)
	}

	got := get(t, s, "dev-a", "test-123")
	assertSameJSON(t, "Data", got.Data, `[1, 2, 3]`)
	// A replace without meta stores the documented empty object, not the old meta.
	assertSameJSON(t, "Meta", got.Meta, `{}`)
	if !got.CreatedAt.Equal(second.CreatedAt) || !got.UpdatedAt.Equal(second.UpdatedAt) {
		t.Errorf("Get times = %v / %v, want %v / %v", got.CreatedAt, got.UpdatedAt, second.CreatedAt, second.UpdatedAt)
	}
	if got.DeviceID != "dev-a" || got.Key != "test-123" {
		t.Errorf("Get returned device %q key %q", got.DeviceID, got.Key)
	}

	// A third write moves updatedAt again and keeps createdAt.
	c.Advance(time.Second)
	third, created, err := s.Put(ctx, record.Record{DeviceID: "dev-a", Key: "test-123", Data: json.RawMessage(`3`), Meta: json.RawMessage(`{"v": 3}`)})
	if err != nil || created {
		t.Fatalf("third Put: created %v, %v", created, err)
	}
	if !third.CreatedAt.Equal(first.CreatedAt) || !third.UpdatedAt.Equal(second.UpdatedAt.Add(time.Second)) {
		t.Errorf("third Put times = %v / %v", third.CreatedAt, third.UpdatedAt)
	}
	assertSameJSON(t, "Meta", get(t, s, "dev-a", "test-123").Meta, `{"v": 3}`)
}

func testPutKeepsJSONValues(t *testing.T, open Open) {
	ctx := context.Background()
	s, _ := newStore(t, open)

	for i, data := range []string{
		`null`, `"text"`, `42`, `-0.5`, `true`, `false`, `[]`, `{}`,
		`{"nested": {"a": [1, null]}}`,
		` { "spaced" : [ 1 , 2 ] , "b" : "x" } `,
		`{"b": 1, "a": 2, "aa": 3}`,
		`"é 😀 \u00e9 \ud83d\ude00"`,
		`"quote \" backslash \\ newline \n tab \t slash \/"`,
		`"\\u0000 is text here, not a NUL"`,
		`"<html> & \u2028"`,
		`123456789012345678901234567890`,
		`0.1`, `1E+5`, `2.50`, `-0`, `1e400`,
		strings.Repeat(`[`, 1500) + strings.Repeat(`]`, 1500), // deeper than SQLite's JSON functions go
	} {
		key := fmt.Sprint("k", i)
		put(t, s, "dev", key, data)
		assertSameJSON(t, "Data of "+key, get(t, s, "dev", key).Data, data)
	}

	meta := `{"source": "unity", "tags": ["a", "b"], "n": 1.5}`
	if _, _, err := s.Put(ctx, record.Record{DeviceID: "dev", Key: "m", Data: json.RawMessage(`1`), Meta: json.RawMessage(meta)}); err != nil {
		t.Fatalf("Put with meta: %v", err)
	}
	assertSameJSON(t, "Meta", get(t, s, "dev", "m").Meta, meta)

	// Of duplicate keys, the last counts (jsonb keeps only it; a reader of
	// compact text takes the last).
	put(t, s, "dev", "dup", `{"a": 1, "a": 2}`)
	var v struct{ A int }
	if err := json.Unmarshal(get(t, s, "dev", "dup").Data, &v); err != nil || v.A != 2 {
		t.Errorf("duplicate keys: a = %d, %v; want 2", v.A, err)
	}
}

// The edges of what PostgreSQL's jsonb holds are stored by every store.
func testPutAcceptsTheLimits(t *testing.T, open Open) {
	s, _ := newStore(t, open)
	for i, data := range []string{
		`1e131071`, `9.9e131071`, `-1e131071`,
		`1e-16383`, `1.5e-16382`, `0e16390`, `0.00000e5`, `0e1000000000`,
		`123456789012345678901234567890e131000`,
		`"\ud800\udc00 a surrogate pair"`,
		`{"key with \ud83d\ude00": "\uDBFF\uDFFF"}`,
	} {
		key := fmt.Sprint("k", i)
		put(t, s, "dev", key, data)
		assertSameJSON(t, "Data of "+key, get(t, s, "dev", key).Data, data)
	}
	// The longest key, of four-byte characters.
	long := strings.Repeat("😀", record.MaxKeyLength)
	put(t, s, "dev", long, `1`)
	if got := get(t, s, "dev", long); got.Key != long {
		t.Errorf("long key came back as %q", got.Key)
	}
}

// What no store keeps is refused with an *record.InvalidError (a 400), and
// nothing is stored.
func testPutRefusesInvalid(t *testing.T, open Open) {
	ctx := context.Background()
	s, _ := newStore(t, open)

	data := func(d string) record.Record {
		return record.Record{DeviceID: "dev", Key: "k", Data: json.RawMessage(d)}
	}
	tests := map[string]record.Record{
		"no data":              {DeviceID: "dev", Key: "k"},
		"blank data":           data("  "),
		"invalid JSON":         data(`{nope`),
		"two values":           data(`1 2`),
		"invalid UTF-8":        data("\"a\xffb\""),
		"NUL in data":          data(`"a\u0000b"`),
		"NUL in an object key": data(`{"\u0000": 1}`),
		"lone high surrogate":  data(`"\ud800"`),
		"lone low surrogate":   data(`"\udc00"`),
		"high then not low":    data(`"\ud800\u0041"`),
		"high then high":       data(`"\ud800\ud800"`),
		"high at the end":      data(`["\ud800"]`),
		"number too large":     data(`1e999999`),
		"just too large":       data(`1e131072`),
		"too many digits":      data(strings.Repeat("9", 131073)),
		"number too small":     data(`{"x": -1e-999999}`),
		"too many decimals":    data(`1e-16384`),
		"scale as written":     data(`1.55e-16382`),
		"zero with a scale":    data(`0e-16384`),
		"exponent overflow":    data(`0e1073741823`),
		"huge exponent":        data(`1e99999999999999999999`),
		"meta an array":        {DeviceID: "dev", Key: "k", Data: json.RawMessage(`1`), Meta: json.RawMessage(`[]`)},
		"meta a string":        {DeviceID: "dev", Key: "k", Data: json.RawMessage(`1`), Meta: json.RawMessage(`"x"`)},
		"meta invalid":         {DeviceID: "dev", Key: "k", Data: json.RawMessage(`1`), Meta: json.RawMessage(`{"a":}`)},
		"NUL in meta":          {DeviceID: "dev", Key: "k", Data: json.RawMessage(`1`), Meta: json.RawMessage(`{"a": "\u0000"}`)},
		"NUL in key":           {DeviceID: "dev", Key: "a\x00", Data: json.RawMessage(`1`)},
		"empty key":            {DeviceID: "dev", Key: "", Data: json.RawMessage(`1`)},
		"key too long":         {DeviceID: "dev", Key: strings.Repeat("k", record.MaxKeyLength+1), Data: json.RawMessage(`1`)},
		"no device":            {Key: "k", Data: json.RawMessage(`1`)},
	}
	for name, r := range tests {
		_, _, err := s.Put(ctx, r)
		var invalid *record.InvalidError
		if !errors.As(err, &invalid) || !errors.Is(err, record.ErrInvalid) {
			t.Errorf("%s: Put = %v, want an *record.InvalidError", name, err)
		}
	}
	if list, err := s.List(ctx, "dev", "", 100); err != nil || len(list) != 0 {
		t.Errorf("after refused puts, List = %+v, %v; want nothing stored", list, err)
	}
}

// Times come back in UTC, rounded to microseconds, equal to what Put
// returned, whatever the clock's location.
func testTimesAreUTCMicroseconds(t *testing.T, open Open) {
	ctx := context.Background()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	at := time.Date(2024, 12, 31, 23, 59, 59, 999999999, zone)
	s := open(t, func() time.Time { return at })

	stored, _ := put(t, s, "dev", "k", `1`)
	want := at.UTC().Truncate(time.Microsecond)
	for name, got := range map[string]time.Time{"Put": stored.CreatedAt, "Put updated": stored.UpdatedAt} {
		if !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("%s time = %v, want %v in UTC", name, got, want)
		}
	}
	got := get(t, s, "dev", "k")
	list, err := s.List(ctx, "dev", "", 10)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	for name, ts := range map[string]time.Time{
		"Get created": got.CreatedAt, "Get updated": got.UpdatedAt,
		"List created": list[0].CreatedAt, "List updated": list[0].UpdatedAt,
	} {
		if !ts.Equal(want) || ts.Location() != time.UTC {
			t.Errorf("%s = %v, want %v in UTC", name, ts, want)
		}
	}
}

func testGetAndDeleteMissing(t *testing.T, open Open) {
	ctx := context.Background()
	s, _ := newStore(t, open)

	if _, err := s.Get(ctx, "dev", "nope"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("Get missing = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "dev", "nope"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("Delete missing = %v, want ErrNotFound", err)
	}
}

func testDelete(t *testing.T, open Open) {
	ctx := context.Background()
	s, c := newStore(t, open)

	put(t, s, "dev", "gone", `1`)
	put(t, s, "dev", "stays", `2`)
	if err := s.Delete(ctx, "dev", "gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, "dev", "gone"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "dev", "gone"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
	assertSameJSON(t, "the other record", get(t, s, "dev", "stays").Data, `2`)

	// A key written again after a delete is new: created, with a new createdAt.
	c.Advance(time.Hour)
	r, created := put(t, s, "dev", "gone", `3`)
	if !created || !r.CreatedAt.Equal(c.Now().Truncate(time.Microsecond)) {
		t.Errorf("Put after Delete: created %v, createdAt %v", created, r.CreatedAt)
	}
}

func listKeys(t *testing.T, s record.Store, device, prefix string, limit int) []string {
	t.Helper()
	list, err := s.List(context.Background(), device, prefix, limit)
	if err != nil {
		t.Fatalf("List(%q, %d): %v", prefix, limit, err)
	}
	var keys []string
	for _, r := range list {
		keys = append(keys, r.Key)
		if r.CreatedAt.IsZero() || r.UpdatedAt.IsZero() || r.DeviceID != device {
			t.Errorf("List item %+v lacks device or times", r)
		}
		if len(r.Data) != 0 || len(r.Meta) != 0 {
			t.Errorf("List item %q carries data or meta", r.Key)
		}
	}
	return keys
}

func testList(t *testing.T, open Open) {
	ctx := context.Background()
	s, c := newStore(t, open)

	for _, key := range []string{"b-2", "a-1", "a-3", "a-2", "a%x", "a_x", "ab", "A-0", "z"} {
		put(t, s, "dev", key, `{}`)
		c.Advance(time.Second)
	}
	put(t, s, "other", "a-9", `{}`)

	tests := []struct {
		prefix string
		limit  int
		want   []string
	}{
		// Bytes order: upper case before lower case and '%' < '-' < '_'.
		{"", 100, []string{"A-0", "a%x", "a-1", "a-2", "a-3", "a_x", "ab", "b-2", "z"}},
		{"a-", 100, []string{"a-1", "a-2", "a-3"}},
		{"a-", 2, []string{"a-1", "a-2"}},
		// With LIKE, '%' and '_' would be wildcards matching every "a…" key.
		{"a%", 100, []string{"a%x"}},
		{"a_", 100, []string{"a_x"}},
		{"nothing", 100, nil},
		{"", 1, []string{"A-0"}},
		{"a-1", 100, []string{"a-1"}}, // a whole key is its own prefix
		{"a-10", 100, nil},            // a prefix longer than the key
	}
	for _, tt := range tests {
		if got := listKeys(t, s, "dev", tt.prefix, tt.limit); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("List(%q, %d) = %v, want %v", tt.prefix, tt.limit, got, tt.want)
		}
	}

	if _, err := s.List(ctx, "dev", "", 0); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("List with limit 0 = %v, want ErrInvalid", err)
	}
	if _, err := s.List(ctx, "dev", "a\x00", 10); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("List with a NUL in the prefix = %v, want ErrInvalid", err)
	}
}

// Keys order by their UTF-8 bytes, whatever the database's locale, and a
// prefix matches exactly its own characters: no case folding, no pattern
// characters, multi-byte characters compared whole.
func testListBytewiseAndLiteral(t *testing.T, open Open) {
	s, _ := newStore(t, open)
	keys := []string{"z", "é", "e", "E", "é1", "e1", "~", "😀", "\uffff", "日本", "a*", "a?", "a[", "a\\", "A", "a.b", "a b"}
	for _, key := range keys {
		put(t, s, "dev", key, `1`)
	}
	want := slices.Clone(keys)
	slices.Sort(want) // Go compares strings by their bytes
	if got := listKeys(t, s, "dev", "", 100); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("List = %q,\nwant %q (by bytes)", got, want)
	}
	for prefix, want := range map[string][]string{
		"é":   {"é", "é1"},
		"e":   {"e", "e1"},
		"E":   {"E"},
		"a*":  {"a*"},
		"a?":  {"a?"},
		"a[":  {"a["},
		"a\\": {"a\\"},
		"a.":  {"a.b"},
		"a ":  {"a b"},
		"日":   {"日本"},
		"😀":   {"😀"},
	} {
		if got := listKeys(t, s, "dev", prefix, 100); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func testDeviceIsolation(t *testing.T, open Open) {
	ctx := context.Background()
	s, _ := newStore(t, open)

	_, createdA := put(t, s, "dev-a", "shared", `"a"`)
	_, createdB := put(t, s, "dev-b", "shared", `"b"`)
	if !createdA || !createdB {
		t.Fatalf("same key on two devices: created = %v, %v; want both true", createdA, createdB)
	}
	put(t, s, "dev-b", "only-b", `"b"`)

	assertSameJSON(t, "dev-a's shared", get(t, s, "dev-a", "shared").Data, `"a"`)
	if _, err := s.Get(ctx, "dev-a", "only-b"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("dev-a Get(only-b) = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "dev-a", "only-b"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("dev-a Delete(only-b) = %v, want ErrNotFound", err)
	}
	if got := listKeys(t, s, "dev-a", "", 100); fmt.Sprint(got) != "[shared]" {
		t.Errorf("dev-a List = %v; want only its own record", got)
	}
	// Device ids are compared exactly: no case folding, no prefix match.
	for _, other := range []string{"DEV-A", "dev-", "dev-a "} {
		if _, err := s.Get(ctx, other, "shared"); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("Get as %q = %v, want ErrNotFound", other, err)
		}
	}
	if err := s.Delete(ctx, "dev-a", "shared"); err != nil {
		t.Fatalf("dev-a Delete(shared): %v", err)
	}
	assertSameJSON(t, "dev-b's record after dev-a deleted its own", get(t, s, "dev-b", "shared").Data, `"b"`)
}

// Puts of a new key racing each other: exactly one may report created, and
// every one of them succeeds.
func testPutConcurrentCreate(t *testing.T, open Open) {
	s, _ := newStore(t, open)

	const n = 8
	var wg sync.WaitGroup
	results := make(chan bool, n)
	for i := range n {
		wg.Go(func() {
			_, created, err := s.Put(context.Background(), record.Record{DeviceID: "dev", Key: "race", Data: json.RawMessage(fmt.Sprint(i))})
			if err != nil {
				t.Errorf("Put: %v", err)
			}
			results <- created
		})
	}
	wg.Wait()
	close(results)
	var creates int
	for c := range results {
		if c {
			creates++
		}
	}
	if creates != 1 {
		t.Errorf("%d of %d concurrent puts reported created, want exactly 1", creates, n)
	}
}

// A request whose client went away fails with the context's error, which
// the HTTP layer tells from a fault of the database.
func testCanceledContext(t *testing.T, open Open) {
	s, _ := newStore(t, open)
	put(t, s, "dev", "k", `1`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, _, err := s.Put(ctx, record.Record{DeviceID: "dev", Key: "k2", Data: json.RawMessage(`1`)})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put = %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, "dev", "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get = %v, want context.Canceled", err)
	}
	if _, err := s.List(ctx, "dev", "", 10); !errors.Is(err, context.Canceled) {
		t.Errorf("List = %v, want context.Canceled", err)
	}
	if err := s.Delete(ctx, "dev", "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete = %v, want context.Canceled", err)
	}
	if _, err := s.Get(context.Background(), "dev", "k2"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("the canceled Put stored its record: Get = %v", err)
	}
	get(t, s, "dev", "k") // the canceled Delete deleted nothing
}

// assertSameJSON checks that got means the same JSON value as want: the
// same structure, the same strings, numbers equal as decimals (1E+5 and
// 100000 are one number), and of duplicate object keys the last.
func assertSameJSON(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	g, err := decodeJSON(got)
	if err != nil {
		t.Errorf("%s = %.200s, not JSON: %v", what, got, err)
		return
	}
	w, err := decodeJSON([]byte(want))
	if err != nil {
		t.Fatalf("%s: the test's JSON %.200s: %v", what, want, err)
	}
	if !sameValue(g, w) {
		t.Errorf("%s = %.200s, want the same JSON as %.200s", what, got, want)
	}
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one value")
	}
	return v, nil
}

func sameValue(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		x, okX := new(big.Rat).SetString(string(a))
		y, okY := new(big.Rat).SetString(string(b))
		return okX && okY && x.Cmp(y) == 0
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if w, ok := b[k]; !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(a, b)
	}
}
