package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/authsidecar/authsidecar/storage-backend/internal/httpapi"
)

// fuzzMaxBody keeps each fuzz input's work small while still reaching the
// size limit.
const fuzzMaxBody = 4 << 10

// FuzzStorageBody posts arbitrary bytes as a record to an API on each store:
// whatever a client sends, the answer is 201, 200, 400 or 413 with a JSON
// body, never a 5xx, and the same status from every store. A 5xx here is a
// body the API let through to the database that the database refused (such
// as a number too large for jsonb); a difference between the stores is a
// body one keeps and the other refuses. The seed corpus runs with every
// `go test`; `go test -fuzz FuzzStorageBody` explores from it.
func FuzzStorageBody(f *testing.F) {
	apis := make([]*httpapi.API, len(stores))
	for i, kind := range stores {
		store, _ := kind.open(f, true)
		apis[i] = &httpapi.API{Store: store, Logger: zap.NewNop(), MaxBodyBytes: fuzzMaxBody}
	}

	for _, seed := range []string{
		`{"key":"test-123","data":{"score":42}}`,
		`{"key":"test-123","data":{"score":43},"meta":{"app":"unity"}}`,
		`{"key":"k","data":null,"meta":null}`,
		`{"key":"k","data":1,"meta":[]}`,
		`{"key":"","data":1}`,
		`{"key":"` + strings.Repeat("k", 257) + `","data":1}`,
		`{"key":"a\u0000b","data":1}`,
		`{"key":"k","data":"\u0000"}`,
		`{"key":"k","data":{"\u0000":1}}`,
		`{"key":"k","data":"\ud800"}`,
		`{"key":"k","data":"\ud800\udc00"}`,
		`{"key":"k","data":"\\u0000"}`,
		`{"key":"k","data":1e131071}`,
		`{"key":"k","data":1e-16384}`,
		`{"key":"k","data":1e999999}`,
		`{"key":"k","data":-1e-999999}`,
		`{"key":"k","data":123456789012345678901234567890e131000}`,
		`{"key":"k","data":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}`,
		`{"key":"k","data":"` + strings.Repeat("x", fuzzMaxBody) + `"}`,
		`{"key":"k"}`,
		`{"key":1,"data":1}`,
		`{"key":"k","data":1} {}`,
		`{"key":"k","data":1,"key":"other"}`,
		"{\"key\":\"\xff\xfe\",\"data\":\"\xff\"}",
		`[]`,
		`null`,
		``,
		`{`,
		"\x00",
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		var first int
		for i, api := range apis {
			code := post(t, api, body)
			if i == 0 {
				first = code
			} else if code != first {
				t.Fatalf("%s answered %d, %s answered %d, for input %q", stores[0].name, first, stores[i].name, code, body)
			}
		}
	})
}

// post sends body as a record and checks the answer's form.
func post(t *testing.T, api *httpapi.API, body []byte) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/storage", strings.NewReader(string(body)))
	req.Header.Set(httpapi.DeviceHeader, "VR-FUZZ")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)

	switch rec.Code {
	case http.StatusCreated, http.StatusOK:
		var got struct {
			Key string `json:"key"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Key == "" {
			t.Fatalf("%d with body %q for input %q", rec.Code, rec.Body, body)
		}
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		var e struct{ Error, Message string }
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" || e.Message == "" {
			t.Fatalf("%d with a body that is not a JSON error: %q (input %q)", rec.Code, rec.Body, body)
		}
	default:
		t.Fatalf("status %d (%s) for input %q", rec.Code, rec.Body, body)
	}
	return rec.Code
}
