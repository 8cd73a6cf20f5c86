package session

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Use is a session's last use as a replica records it.
type Use struct {
	ID string
	At time.Time
}

// idle enforces SESSION_IDLE_TIMEOUT without a write per request: each
// replica keeps in memory when it last saw each session used, and writes
// a use to the store (TouchSessions, in batches) only when the store's
// record is more than an eighth of the timeout behind it. So the store's
// last_seen_at lags the last use by at most a quarter of the timeout (the
// eighth, plus the eighth the next flush may take), and:
//
//   - a session is refused only when the store itself, read afresh, says it
//     has been idle for more than 1¼ × the timeout: one used within the
//     timeout, on any replica, is never refused;
//   - a replica accepts only while what it knows (the store's record as
//     cached, and its own uses) is within 1¼ × the timeout: one idle for
//     more than that — 1.5 × included — is never accepted.
type idle struct {
	timeout time.Duration
	log     *zap.Logger

	mu    sync.Mutex
	seen  map[string]seen      // by session id
	dirty map[string]time.Time // uses to write
}

type seen struct {
	used   time.Time // last use on this replica
	stored time.Time // the store's record as this replica last knew it
}

func newIdle(timeout time.Duration, log *zap.Logger) *idle {
	return &idle{timeout: timeout, log: log, seen: map[string]seen{}, dirty: map[string]time.Time{}}
}

// limit is how long a session may look unused before it is refused.
func (d *idle) limit() time.Duration { return d.timeout + d.timeout/4 }

// fresh reports whether session id, whose store record says it was last
// used at stored, counts as used recently enough at now.
func (d *idle) fresh(id string, stored, now time.Time) bool {
	d.mu.Lock()
	e := d.seen[id]
	d.mu.Unlock()
	last := latest(stored, e.stored, e.used)
	return now.Sub(last) <= d.limit()
}

// use records a use of session id at now, whose store record says stored.
func (d *idle) use(id string, stored, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.seen[id]
	e.used = now
	e.stored = latest(e.stored, stored)
	d.seen[id] = e
	if now.Sub(e.stored) > d.timeout/8 {
		d.dirty[id] = now
	}
}

// take returns the uses to write, and forgets sessions unused here for
// long: they are refused or gone by now.
func (d *idle) take(now time.Time) []Use {
	d.mu.Lock()
	defer d.mu.Unlock()
	uses := make([]Use, 0, len(d.dirty))
	for id, at := range d.dirty {
		uses = append(uses, Use{ID: id, At: at})
	}
	clear(d.dirty)
	for id, e := range d.seen {
		if now.Sub(e.used) > 2*d.timeout {
			delete(d.seen, id)
		}
	}
	return uses
}

// written marks uses as in the store, or puts them back to be written
// again when the write failed.
func (d *idle) written(uses []Use, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range uses {
		if !ok {
			if at, dirty := d.dirty[u.ID]; !dirty || at.Before(u.At) {
				d.dirty[u.ID] = u.At
			}
			continue
		}
		if e, known := d.seen[u.ID]; known {
			e.stored = latest(e.stored, u.At)
			d.seen[u.ID] = e
		}
	}
}

func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}

// FlushIdle writes the recorded uses of sessions to the store every eighth
// of SESSION_IDLE_TIMEOUT until ctx ends (and once more then). Without an
// idle timeout it returns at once.
func (m *Manager) FlushIdle(ctx context.Context) {
	if m.idle == nil {
		return
	}
	t := time.NewTicker(max(m.idle.timeout/8, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.FlushUses(context.WithoutCancel(ctx))
			return
		case <-t.C:
			m.FlushUses(ctx)
		}
	}
}

// FlushUses writes the uses recorded since the last flush (FlushIdle does
// it on a ticker).
func (m *Manager) FlushUses(ctx context.Context) {
	if m.idle == nil {
		return
	}
	uses := m.idle.take(m.now())
	if len(uses) == 0 {
		return
	}
	err := m.store.TouchSessions(ctx, uses)
	m.idle.written(uses, err == nil)
	if err != nil {
		m.log.Warn("could not record session uses; will retry", zap.Int("sessions", len(uses)), zap.Error(err))
	}
}
