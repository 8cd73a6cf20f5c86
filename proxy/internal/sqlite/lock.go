package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/pressly/goose/v3/lock"
)

// held is the set of lock files this process holds, by path: flock(2)
// already excludes a second holder in the same process on a local file
// system, but not on every file system (NFS emulates it with byte-range
// locks, which a process shares with itself), nor where there is no flock.
var held struct {
	mu    sync.Mutex
	paths map[string]bool
}

// tryLock takes the lock file path without waiting; ok is false when
// another holder has it.
func tryLock(path string) (release func(), ok bool, err error) {
	held.mu.Lock()
	defer held.mu.Unlock()
	if held.paths[path] {
		return nil, false, nil
	}
	unlock, ok, err := lockFile(path)
	if err != nil || !ok {
		return nil, false, err
	}
	if held.paths == nil {
		held.paths = map[string]bool{}
	}
	held.paths[path] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			unlock()
			held.mu.Lock()
			delete(held.paths, path)
			held.mu.Unlock()
		})
	}, true, nil
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// lockName is name as it may appear in a file name: itself when plain,
// else a hash of it.
func lockName(name string) string {
	if plainName.MatchString(name) {
		return name
	}
	h := sha256.Sum256([]byte(name))
	return "h" + hex.EncodeToString(h[:16])
}

// migrationLock lets one migrator at a time apply migrations to a
// database, whether the others are in this process or another; they wait
// for it (up to five minutes, as the PostgreSQL store's migrators do).
type migrationLock struct {
	path    string
	mu      sync.Mutex
	release func()
}

var _ lock.Locker = (*migrationLock)(nil)

func (l *migrationLock) Lock(ctx context.Context, _ *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		release, ok, err := tryLock(l.path)
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		if ok {
			l.mu.Lock()
			l.release = release
			l.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migration lock: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (l *migrationLock) Unlock(context.Context, *sql.DB) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.release != nil {
		l.release()
		l.release = nil
	}
	return nil
}
