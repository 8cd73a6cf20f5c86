package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/authsidecar/authsidecar/storage-backend/internal/httpapi"
	"github.com/authsidecar/authsidecar/storage-backend/internal/record"
)

// downStore fails as the PostgreSQL store does while its database
// restarts.
type downStore struct{ record.Store }

func (downStore) Get(context.Context, string, string) (record.Record, error) {
	return record.Record{}, fmt.Errorf("get record: %w: dial tcp 10.0.0.5:5432: connection refused", record.ErrUnavailable)
}

func TestUnavailableStoreIs503(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&httpapi.API{Store: downStore{}, Logger: zaptest.NewLogger(t)})
	t.Cleanup(srv.Close)
	r := do(t, srv, "GET", "/api/storage/k", "dev", "")
	wantError(t, r, http.StatusServiceUnavailable, "unavailable")
	if bytes.Contains(r.body, []byte("10.0.0.5")) {
		t.Errorf("503 body shows the cause: %s", r.body)
	}
}
