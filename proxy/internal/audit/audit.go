// Package audit reads and prunes the audit trail: the events that the
// stores write in the same transaction as each change they record (see
// auth.Recording).
package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/cleanup"
)

// Store is where the trail lives.
type Store interface {
	ListEvents(ctx context.Context, f auth.EventFilter) ([]auth.Event, error)
	DeleteEventsBefore(ctx context.Context, before time.Time, limit int) (int64, error)
}

// Service lists and prunes events.
type Service struct {
	store     Store
	retention time.Duration // 0: forever
	now       func() time.Time
}

// New returns a Service keeping events for retention (0: forever).
func New(store Store, retention time.Duration, now func() time.Time) *Service {
	return &Service{store: store, retention: retention, now: now}
}

// MaxList bounds one listing through the API.
const MaxList = 1000

// List returns the events f selects, oldest first.
func (s *Service) List(ctx context.Context, f auth.EventFilter) ([]auth.Event, error) {
	if f.Type != "" && !known(f.Type) {
		return nil, auth.InvalidInputf("unknown event type %q", f.Type)
	}
	events, err := s.store.ListEvents(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return events, nil
}

func known(t auth.EventType) bool {
	for _, k := range auth.EventTypes {
		if k == t {
			return true
		}
	}
	return false
}

// Prune deletes the events older than the retention, in batches, and
// returns how many; with no retention it keeps everything.
func (s *Service) Prune(ctx context.Context) (int64, error) {
	if s.retention <= 0 {
		return 0, nil
	}
	before := s.now().Add(-s.retention)
	return cleanup.InBatches(5000, func(limit int) (int64, error) {
		return s.store.DeleteEventsBefore(ctx, before, limit)
	})
}
