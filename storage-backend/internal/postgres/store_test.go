package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/storage-backend/internal/pgtest"
	"github.com/authsidecar/authsidecar/storage-backend/internal/postgres"
	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
)

// clock is a settable time source for Store.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newStore returns a store on a migrated schema of the test's own.
func newStore(t *testing.T) (*postgres.Store, *clock) {
	t.Helper()
	pool := pgtest.Pool(t)
	if _, err := postgres.Migrate(context.Background(), pool, postgres.Up); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	c := &clock{now: time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)}
	s := postgres.NewStore(pool)
	s.Now = c.Now
	return s, c
}

func put(t *testing.T, s *postgres.Store, device, key, data string) (record.Record, bool) {
	t.Helper()
	r, created, err := s.Put(context.Background(), record.Record{DeviceID: device, Key: key, Data: json.RawMessage(data)})
	if err != nil {
		t.Fatalf("Put(%s, %s): %v", device, key, err)
	}
	return r, created
}

func TestPutCreatesThenReplaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c := newStore(t)

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
	if first.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt location = %v, want UTC", first.CreatedAt.Location())
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

	got, err := s.Get(ctx, "dev-a", "test-123")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(got.Data) != `[1, 2, 3]` {
		t.Errorf("Data = %s, want [1, 2, 3]", got.Data)
	}
	// A replace without meta stores the documented empty object, not the old meta.
	if string(got.Meta) != `{}` {
		t.Errorf("Meta = %s, want {}", got.Meta)
	}
	if !got.CreatedAt.Equal(second.CreatedAt) || !got.UpdatedAt.Equal(second.UpdatedAt) {
		t.Errorf("Get times = %v / %v, want %v / %v", got.CreatedAt, got.UpdatedAt, second.CreatedAt, second.UpdatedAt)
	}
}

func TestPutKeepsJSONValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)

	for i, data := range []string{`null`, `"text"`, `42`, `true`, `{"nested": {"a": [1, null]}}`} {
		key := fmt.Sprint("k", i)
		put(t, s, "dev", key, data)
		got, err := s.Get(ctx, "dev", key)
		if err != nil {
			t.Fatalf("Get(%s): %v", key, err)
		}
		if string(got.Data) != data {
			t.Errorf("Data for %s = %s, want %s", data, got.Data, data)
		}
	}

	_, _, err := s.Put(ctx, record.Record{DeviceID: "dev", Key: "m", Data: json.RawMessage(`1`), Meta: json.RawMessage(`{"source": "unity"}`)})
	if err != nil {
		t.Fatalf("Put with meta: %v", err)
	}
	got, err := s.Get(ctx, "dev", "m")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(got.Meta) != `{"source": "unity"}` {
		t.Errorf("Meta = %s", got.Meta)
	}
}

func TestPutRefusesWhatPostgreSQLCannotStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)

	tests := map[string]record.Record{
		// Valid JSON, but jsonb has no room for NUL: without translation this was a 500.
		"NUL in data":   {DeviceID: "dev", Key: "k", Data: json.RawMessage(`"a\u0000b"`)},
		"invalid JSON":  {DeviceID: "dev", Key: "k", Data: json.RawMessage(`{nope`)},
		"meta an array": {DeviceID: "dev", Key: "k", Data: json.RawMessage(`1`), Meta: json.RawMessage(`[]`)},
		"no data":       {DeviceID: "dev", Key: "k"},
		"NUL in key":    {DeviceID: "dev", Key: "a\x00", Data: json.RawMessage(`1`)},
	}
	for name, r := range tests {
		_, _, err := s.Put(ctx, r)
		var invalid *record.InvalidError
		if !errors.As(err, &invalid) || !errors.Is(err, record.ErrInvalid) {
			t.Errorf("%s: Put = %v, want an *record.InvalidError", name, err)
		}
	}
}

func TestGetAndDeleteMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)

	if _, err := s.Get(ctx, "dev", "nope"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("Get missing = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "dev", "nope"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("Delete missing = %v, want ErrNotFound", err)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)

	put(t, s, "dev", "gone", `1`)
	if err := s.Delete(ctx, "dev", "gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, "dev", "gone"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "dev", "gone"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c := newStore(t)

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
		// "C" collation: bytes order, so upper case before lower case and '%' < '-' < '_'.
		{"", 100, []string{"A-0", "a%x", "a-1", "a-2", "a-3", "a_x", "ab", "b-2", "z"}},
		{"a-", 100, []string{"a-1", "a-2", "a-3"}},
		{"a-", 2, []string{"a-1", "a-2"}},
		// With LIKE, '%' and '_' would be wildcards matching every "a…" key.
		{"a%", 100, []string{"a%x"}},
		{"a_", 100, []string{"a_x"}},
		{"nothing", 100, nil},
		{"", 1, []string{"A-0"}},
	}
	for _, tt := range tests {
		list, err := s.List(ctx, "dev", tt.prefix, tt.limit)
		if err != nil {
			t.Fatalf("List(%q, %d): %v", tt.prefix, tt.limit, err)
		}
		var keys []string
		for _, r := range list {
			keys = append(keys, r.Key)
			if r.CreatedAt.IsZero() || r.UpdatedAt.IsZero() || r.DeviceID != "dev" {
				t.Errorf("List item %+v lacks device or times", r)
			}
		}
		if fmt.Sprint(keys) != fmt.Sprint(tt.want) {
			t.Errorf("List(%q, %d) = %v, want %v", tt.prefix, tt.limit, keys, tt.want)
		}
	}

	if _, err := s.List(ctx, "dev", "", 0); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("List with limit 0 = %v, want ErrInvalid", err)
	}
}

func TestDeviceIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)

	_, createdA := put(t, s, "dev-a", "shared", `"a"`)
	_, createdB := put(t, s, "dev-b", "shared", `"b"`)
	if !createdA || !createdB {
		t.Fatalf("same key on two devices: created = %v, %v; want both true", createdA, createdB)
	}
	put(t, s, "dev-b", "only-b", `"b"`)

	got, err := s.Get(ctx, "dev-a", "shared")
	if err != nil || string(got.Data) != `"a"` {
		t.Fatalf("dev-a Get(shared) = %s, %v; want \"a\"", got.Data, err)
	}
	if _, err := s.Get(ctx, "dev-a", "only-b"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("dev-a Get(only-b) = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "dev-a", "only-b"); !errors.Is(err, record.ErrNotFound) {
		t.Errorf("dev-a Delete(only-b) = %v, want ErrNotFound", err)
	}
	list, err := s.List(ctx, "dev-a", "", 100)
	if err != nil || len(list) != 1 || list[0].Key != "shared" {
		t.Errorf("dev-a List = %+v, %v; want only its own record", list, err)
	}
	if err := s.Delete(ctx, "dev-a", "shared"); err != nil {
		t.Fatalf("dev-a Delete(shared): %v", err)
	}
	got, err = s.Get(ctx, "dev-b", "shared")
	if err != nil || string(got.Data) != `"b"` {
		t.Errorf("dev-b record after dev-a deleted its own: %s, %v", got.Data, err)
	}
}

// Two puts of a new key racing each other: exactly one may report created.
func TestPutConcurrentCreate(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)

	const n = 8
	var wg sync.WaitGroup
	results := make(chan bool, n)
	for range n {
		wg.Go(func() {
			_, created, err := s.Put(context.Background(), record.Record{DeviceID: "dev", Key: "race", Data: json.RawMessage(`1`)})
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
