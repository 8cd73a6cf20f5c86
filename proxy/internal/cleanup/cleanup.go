// Package cleanup runs the background janitor: every interval, one replica
// at a time deletes expired sessions and stale login-failure counts, in
// short batches so that a backlog of millions never holds locks that stall
// logins.
package cleanup

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Task deletes one kind of dead rows and returns how many.
type Task struct {
	Name string
	Run  func(ctx context.Context) (int64, error)
}

// Janitor runs Tasks every Every, while holding Lock.
type Janitor struct {
	Every time.Duration
	// Lock takes a lock shared by every replica, without waiting; ok is
	// false when another replica holds it, and this round is skipped.
	Lock  func(ctx context.Context) (release func(), ok bool, err error)
	Tasks []Task
	Log   *zap.Logger
}

// Run runs rounds until ctx ends. The first round runs at once, so that a
// backlog left while no replica ran is cleared at start.
func (j *Janitor) Run(ctx context.Context) {
	t := time.NewTicker(j.Every)
	defer t.Stop()
	for {
		j.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round runs every task once if this replica gets the lock, and reports
// whether it did.
func (j *Janitor) Round(ctx context.Context) bool {
	release, ok, err := j.Lock(ctx)
	if err != nil {
		if ctx.Err() == nil {
			j.Log.Warn("cleanup skipped: lock failed", zap.Error(err))
		}
		return false
	}
	if !ok {
		j.Log.Debug("cleanup skipped: another replica is cleaning")
		return false
	}
	defer release()
	for _, task := range j.Tasks {
		start := time.Now()
		n, err := task.Run(ctx)
		if err != nil {
			if ctx.Err() == nil {
				j.Log.Warn("cleanup failed", zap.String("task", task.Name), zap.Int64("deleted", n), zap.Error(err))
			}
			continue
		}
		level := zap.DebugLevel
		if n > 0 {
			level = zap.InfoLevel
		}
		if ce := j.Log.Check(level, "cleanup done"); ce != nil {
			ce.Write(zap.String("task", task.Name), zap.Int64("deleted", n), zap.Duration("took", time.Since(start)))
		}
	}
	return true
}

// InBatches deletes dead rows limit at a time, with del, until a batch
// comes back short, and returns how many it deleted in all. One statement
// then never holds locks on more than limit rows, so that a backlog of
// millions does not stall the writes of live traffic.
func InBatches(limit int, del func(limit int) (int64, error)) (int64, error) {
	var total int64
	for {
		n, err := del(limit)
		total += n
		if err != nil || n < int64(limit) {
			return total, err
		}
	}
}
