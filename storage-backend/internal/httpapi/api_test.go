package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/internal/testkit"
	"github.com/authsidecar/authsidecar/storage-backend/internal/httpapi"
	"github.com/authsidecar/authsidecar/storage-backend/internal/postgres"
	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
	"github.com/authsidecar/authsidecar/storage-backend/internal/schema"
	"github.com/authsidecar/authsidecar/storage-backend/internal/sqlite"
)

// storeKind opens a store of one kind for a test, on a database of the
// test's own, migrated or not, and returns it with its readiness check.
type storeKind struct {
	name string
	open func(t testing.TB, migrated bool) (record.Store, func(context.Context) error)
}

// stores are the stores every HTTP test runs against: the API must answer
// the same whichever one keeps the records.
var stores = []storeKind{
	{"postgres", func(t testing.TB, migrated bool) (record.Store, func(context.Context) error) {
		pool := testkit.Pool(t)
		if migrated {
			if _, err := postgres.Migrate(context.Background(), pool, postgres.Up); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
		}
		return postgres.NewStore(pool), func(ctx context.Context) error { return postgres.Ready(ctx, pool) }
	}},
	{"sqlite", func(t testing.TB, migrated bool) (record.Store, func(context.Context) error) {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), sqlite.FileName))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if migrated {
			if _, err := sqlite.Migrate(context.Background(), db, schema.Up); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
		}
		return sqlite.NewStore(db), func(ctx context.Context) error { return sqlite.Ready(ctx, db) }
	}},
}

// eachStore runs test once per store, in parallel subtests named after it.
func eachStore(t *testing.T, test func(t *testing.T, kind storeKind)) {
	t.Helper()
	for _, kind := range stores {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			test(t, kind)
		})
	}
}

// newServer starts the API on a migrated database of the test's own.
func newServer(t *testing.T, kind storeKind, maxBody int64) (*httptest.Server, *httpapi.API) {
	t.Helper()
	store, ready := kind.open(t, true)
	api := &httpapi.API{
		Store:        store,
		Logger:       zaptest.NewLogger(t),
		MaxBodyBytes: maxBody,
		Ready:        ready,
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv, api
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic map.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// do sends a request as device (no X-Auth-Device-Id header when device is "").
func do(t *testing.T, srv *httptest.Server, method, path, device, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if device != "" {
		req.Header.Set(httpapi.DeviceHeader, device)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, b}
}

// wantError checks status, JSON content type and error code.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	m := r.json(t)
	if m["error"] != code {
		t.Errorf("error = %v, want %q (body %s)", m["error"], code, r.body)
	}
	if msg, _ := m["message"].(string); msg == "" {
		t.Errorf("error body %s has no message", r.body)
	}
}

func parseTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !strings.HasSuffix(s, "Z") {
		t.Fatalf("time %v is not RFC 3339 UTC: %v", v, err)
	}
	return ts
}

func TestPutCreatesThenReplaces(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 0)

		r := do(t, srv, "POST", "/api/storage", "VR-DEVICE-002", `{"key": "test-123", "data": {"score": 10}, "meta": {"app": "unity"}}`)
		if r.status != http.StatusCreated {
			t.Fatalf("first POST = %d %s, want 201", r.status, r.body)
		}
		first := r.json(t)
		if first["key"] != "test-123" || len(first) != 3 {
			t.Errorf("201 body = %s, want key, createdAt, updatedAt", r.body)
		}
		created := parseTime(t, first["createdAt"])
		parseTime(t, first["updatedAt"])

		r = do(t, srv, "POST", "/api/storage", "VR-DEVICE-002", `{"key": "test-123", "data": [1, 2]}`)
		if r.status != http.StatusOK {
			t.Fatalf("second POST = %d %s, want 200", r.status, r.body)
		}
		second := r.json(t)
		if !parseTime(t, second["createdAt"]).Equal(created) {
			t.Errorf("createdAt changed on replace: %v -> %v", first["createdAt"], second["createdAt"])
		}
		if parseTime(t, second["updatedAt"]).Before(created) {
			t.Errorf("updatedAt %v is before createdAt %v", second["updatedAt"], first["createdAt"])
		}

		r = do(t, srv, "GET", "/api/storage/test-123", "VR-DEVICE-002", "")
		if r.status != http.StatusOK {
			t.Fatalf("GET = %d %s", r.status, r.body)
		}
		var got struct {
			Key       string          `json:"key"`
			Data      json.RawMessage `json:"data"`
			Meta      json.RawMessage `json:"meta"`
			CreatedAt time.Time       `json:"createdAt"`
			UpdatedAt time.Time       `json:"updatedAt"`
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Key != "test-123" || string(got.Data) != "[1,2]" || string(got.Meta) != "{}" {
			t.Errorf("GET body = %s, want the replacing record with meta {}", r.body)
		}
	})
}

func TestPutNullDataAndNullMeta(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 0)

		// Unknown fields ("version") are ignored.
		r := do(t, srv, "POST", "/api/storage", "dev", `{"key": "n", "data": null, "meta": null, "version": 2}`)
		if r.status != http.StatusCreated {
			t.Fatalf("POST with data null = %d %s, want 201", r.status, r.body)
		}
		r = do(t, srv, "GET", "/api/storage/n", "dev", "")
		m := r.json(t)
		if v, ok := m["data"]; !ok || v != nil {
			t.Errorf("data = %v (present %v), want null", v, ok)
		}
		if meta, ok := m["meta"].(map[string]any); !ok || len(meta) != 0 {
			t.Errorf("meta = %v, want {}", m["meta"])
		}
	})
}

func TestPutInvalid(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 0)

		tests := map[string]string{
			"not JSON":         `key=test`,
			"empty body":       ``,
			"truncated":        `{"key": "k", "data": `,
			"trailing garbage": `{"key": "k", "data": 1} x`,
			"two objects":      `{"key": "k", "data": 1} {"key": "j", "data": 2}`,
			"array body":       `[{"key": "k", "data": 1}]`,
			"key missing":      `{"data": 1}`,
			"key empty":        `{"key": "", "data": 1}`,
			"key too long":     `{"key": "` + strings.Repeat("k", 257) + `", "data": 1}`,
			"key a number":     `{"key": 7, "data": 1}`,
			"key with NUL":     `{"key": "a\u0000b", "data": 1}`,
			"data missing":     `{"key": "k"}`,
			"meta an array":    `{"key": "k", "data": 1, "meta": [1]}`,
			"meta a string":    `{"key": "k", "data": 1, "meta": "x"}`,
			"NUL in data":      `{"key": "k", "data": "a\u0000b"}`,
		}
		for name, body := range tests {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				wantError(t, do(t, srv, "POST", "/api/storage", "dev", body), http.StatusBadRequest, "invalid_request")
			})
		}
		t.Run("256 characters is fine", func(t *testing.T) {
			t.Parallel()
			r := do(t, srv, "POST", "/api/storage", "dev", `{"key": "`+strings.Repeat("é", 256)+`", "data": 1}`)
			if r.status != http.StatusCreated {
				t.Fatalf("status = %d %s, want 201", r.status, r.body)
			}
		})
	})
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 64)

		big := `{"key": "k", "data": "` + strings.Repeat("x", 100) + `"}`
		wantError(t, do(t, srv, "POST", "/api/storage", "dev", big), http.StatusRequestEntityTooLarge, "body_too_large")
		// The limit also covers what follows a valid object.
		trailing := `{"key": "k", "data": 1}` + strings.Repeat(" ", 100)
		wantError(t, do(t, srv, "POST", "/api/storage", "dev", trailing), http.StatusRequestEntityTooLarge, "body_too_large")

		if r := do(t, srv, "POST", "/api/storage", "dev", `{"key": "k", "data": 1}`); r.status != http.StatusCreated {
			t.Fatalf("small body = %d %s, want 201", r.status, r.body)
		}
	})
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 0)

		for _, tc := range []struct{ method, path, body string }{
			{"POST", "/api/storage", `{"key": "k", "data": 1}`},
			{"GET", "/api/storage", ""},
			{"GET", "/api/storage/k", ""},
			{"DELETE", "/api/storage/k", ""},
			{"PUT", "/api/storage", ""},
			{"GET", "/elsewhere", ""},
		} {
			wantError(t, do(t, srv, tc.method, tc.path, "", tc.body), http.StatusUnauthorized, "unauthorized")
		}

		// An empty header is no identity either.
		req, _ := http.NewRequest("GET", srv.URL+"/api/storage", nil)
		req.Header.Set(httpapi.DeviceHeader, "")
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("empty %s: status %d, want 401", httpapi.DeviceHeader, res.StatusCode)
		}

		// Go canonicalizes header names: the proxy's spelling does not matter.
		req, _ = http.NewRequest("GET", srv.URL+"/api/storage", nil)
		req.Header["x-auth-device-id"] = []string{"dev"}
		res, err = srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("lower-case header: status %d, want 200", res.StatusCode)
		}
	})
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 0)

		wantError(t, do(t, srv, "GET", "/api/storage/missing", "dev", ""), http.StatusNotFound, "not_found")
		wantError(t, do(t, srv, "DELETE", "/api/storage/missing", "dev", ""), http.StatusNotFound, "not_found")
		wantError(t, do(t, srv, "GET", "/api/other", "dev", ""), http.StatusNotFound, "not_found")
		wantError(t, do(t, srv, "GET", "/", "dev", ""), http.StatusNotFound, "not_found")

		for _, tc := range []struct{ method, path, allow string }{
			{"PUT", "/api/storage", "GET, HEAD, POST"},
			{"DELETE", "/api/storage", "GET, HEAD, POST"},
			{"POST", "/api/storage/k", "GET, HEAD, DELETE"},
			{"PATCH", "/api/storage/k", "GET, HEAD, DELETE"},
			{"POST", "/healthz", "GET, HEAD"},
			{"DELETE", "/readyz", "GET, HEAD"},
		} {
			r := do(t, srv, tc.method, tc.path, "dev", "")
			wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("%s %s: Allow = %q, want %q", tc.method, tc.path, got, tc.allow)
			}
		}
	})
}

func TestKeysWithSlashesAndEscapes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 0)

		if r := do(t, srv, "POST", "/api/storage", "dev", `{"key": "runs/2024 05/1", "data": 1}`); r.status != http.StatusCreated {
			t.Fatalf("POST = %d %s", r.status, r.body)
		}
		r := do(t, srv, "GET", "/api/storage/runs/2024%2005/1", "dev", "")
		if r.status != http.StatusOK || r.json(t)["key"] != "runs/2024 05/1" {
			t.Fatalf("GET = %d %s", r.status, r.body)
		}
		if r := do(t, srv, "DELETE", "/api/storage/runs/2024%2005/1", "dev", ""); r.status != http.StatusNoContent {
			t.Fatalf("DELETE = %d %s", r.status, r.body)
		}
		// An empty key can never exist.
		wantError(t, do(t, srv, "GET", "/api/storage/", "dev", ""), http.StatusBadRequest, "invalid_request")
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 0)

		r := do(t, srv, "GET", "/api/storage", "dev", "")
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"items":[]}` {
			t.Fatalf("empty list = %d %s, want 200 {\"items\":[]}", r.status, r.body)
		}

		for _, key := range []string{"s-2", "s-1", "t-1", "s_3", "s%4"} {
			if r := do(t, srv, "POST", "/api/storage", "dev", `{"key": "`+key+`", "data": {"big": "payload"}}`); r.status != http.StatusCreated {
				t.Fatalf("POST %s = %d %s", key, r.status, r.body)
			}
		}
		do(t, srv, "POST", "/api/storage", "other", `{"key": "s-0", "data": 1}`)

		keys := func(r response) string {
			t.Helper()
			var body struct {
				Items []map[string]any `json:"items"`
			}
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, it := range body.Items {
				if _, ok := it["data"]; ok {
					t.Errorf("list item carries data: %v", it)
				}
				parseTime(t, it["createdAt"])
				parseTime(t, it["updatedAt"])
				out = append(out, it["key"].(string))
			}
			return strings.Join(out, ",")
		}
		for query, want := range map[string]string{
			"":                    "s%4,s-1,s-2,s_3,t-1",
			"?prefix=s-":          "s-1,s-2",
			"?prefix=s-&limit=1":  "s-1",
			"?limit=2":            "s%4,s-1",
			"?prefix=s%25":        "s%4", // a literal '%', not a wildcard
			"?prefix=s_":          "s_3", // a literal '_'
			"?prefix=none":        "",
			"?limit=1000":         "s%4,s-1,s-2,s_3,t-1",
			"?prefix=&limit=100":  "s%4,s-1,s-2,s_3,t-1",
			"?prefix=t&limit=100": "t-1",
		} {
			r := do(t, srv, "GET", "/api/storage"+query, "dev", "")
			if r.status != http.StatusOK {
				t.Fatalf("GET %s = %d %s", query, r.status, r.body)
			}
			if got := keys(r); got != want {
				t.Errorf("GET %s = %s, want %s", query, got, want)
			}
		}
		for _, query := range []string{"?limit=abc", "?limit=0", "?limit=-1", "?limit=1001", "?limit=1.5"} {
			wantError(t, do(t, srv, "GET", "/api/storage"+query, "dev", ""), http.StatusBadRequest, "invalid_request")
		}
	})
}

func TestDelete(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 0)

		do(t, srv, "POST", "/api/storage", "dev", `{"key": "k", "data": 1}`)
		r := do(t, srv, "DELETE", "/api/storage/k", "dev", "")
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("DELETE = %d %q, want 204 without body", r.status, r.body)
		}
		wantError(t, do(t, srv, "GET", "/api/storage/k", "dev", ""), http.StatusNotFound, "not_found")
		wantError(t, do(t, srv, "DELETE", "/api/storage/k", "dev", ""), http.StatusNotFound, "not_found")
	})
}

func TestDeviceIsolation(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, _ := newServer(t, kind, 0)

		if r := do(t, srv, "POST", "/api/storage", "device-b", `{"key": "secret", "data": "b's"}`); r.status != http.StatusCreated {
			t.Fatalf("POST as B = %d", r.status)
		}
		wantError(t, do(t, srv, "GET", "/api/storage/secret", "device-a", ""), http.StatusNotFound, "not_found")
		wantError(t, do(t, srv, "DELETE", "/api/storage/secret", "device-a", ""), http.StatusNotFound, "not_found")
		if r := do(t, srv, "GET", "/api/storage", "device-a", ""); !bytes.Contains(r.body, []byte(`"items":[]`)) {
			t.Errorf("A's list = %s, want empty", r.body)
		}
		// The same key written by A is A's own record, not a replacement of B's.
		if r := do(t, srv, "POST", "/api/storage", "device-a", `{"key": "secret", "data": "a's"}`); r.status != http.StatusCreated {
			t.Errorf("POST same key as A = %d, want 201", r.status)
		}
		r := do(t, srv, "GET", "/api/storage/secret", "device-b", "")
		if r.status != http.StatusOK || r.json(t)["data"] != "b's" {
			t.Errorf("B's record after A's writes = %d %s", r.status, r.body)
		}
	})
}

func TestProbes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		srv, api := newServer(t, kind, 0)

		// No identity needed.
		if r := do(t, srv, "GET", "/healthz", "", ""); r.status != http.StatusOK {
			t.Errorf("healthz = %d %s", r.status, r.body)
		}
		if r := do(t, srv, "GET", "/readyz", "", ""); r.status != http.StatusOK {
			t.Errorf("readyz = %d %s", r.status, r.body)
		}
		api.Drain()
		wantError(t, do(t, srv, "GET", "/readyz", "", ""), http.StatusServiceUnavailable, "unavailable")
		if r := do(t, srv, "GET", "/healthz", "", ""); r.status != http.StatusOK {
			t.Errorf("healthz while draining = %d, want 200", r.status)
		}
	})
}

func TestReadyzWithoutSchema(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		store, ready := kind.open(t, false) // not migrated
		srv := httptest.NewServer(&httpapi.API{Store: store, Ready: ready})
		t.Cleanup(srv.Close)
		wantError(t, do(t, srv, "GET", "/readyz", "", ""), http.StatusServiceUnavailable, "unavailable")
	})

	// A database that does not answer.
	down := &httpapi.API{
		Store: brokenStore{},
		Ready: func(context.Context) error { return errors.New("connection refused") },
	}
	srv := httptest.NewServer(down)
	t.Cleanup(srv.Close)
	wantError(t, do(t, srv, "GET", "/readyz", "", ""), http.StatusServiceUnavailable, "unavailable")
}

// brokenStore fails every call the way a lost database connection would.
// It stands in for a database fault, which a real PostgreSQL will not
// produce on demand.
type brokenStore struct{ record.Store }

var errBroken = errors.New("read tcp 10.0.0.5:5432: connection reset by peer")

func (brokenStore) Get(context.Context, string, string) (record.Record, error) {
	return record.Record{}, errBroken
}

func TestInternalErrorHidesCause(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&httpapi.API{Store: brokenStore{}, Logger: zaptest.NewLogger(t)})
	t.Cleanup(srv.Close)

	r := do(t, srv, "GET", "/api/storage/k", "dev", "")
	wantError(t, r, http.StatusInternalServerError, "internal_error")
	if bytes.Contains(r.body, []byte("10.0.0.5")) {
		t.Errorf("500 body shows the cause: %s", r.body)
	}
}
