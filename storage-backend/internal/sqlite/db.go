// Package sqlite keeps records in an embedded SQLite database, the store for
// when no PostgreSQL is configured: one file in DATA_DIR, no server, no cgo
// (the modernc.org/sqlite driver is pure Go). It has the semantics of the
// PostgreSQL store, checked by the same test suite (package storetest), and
// carries migrations with the same versions, names and version table.
//
// It is meant for one process. SQLite serializes writers, and a second
// process on the same file would work but share no migration lock; for
// several replicas, use PostgreSQL. Driver errors are translated here, at
// the boundary: no caller sees sql.ErrNoRows or an SQLite result code.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the database file's name in the data directory.
const FileName = "storage.db"

// params configure every connection the pool opens:
//   - busy_timeout: wait up to 10s for another connection's write lock
//     instead of failing at once (another process, such as a migrate
//     command, may hold it);
//   - journal_mode WAL: readers do not block the writer, nor it them;
//   - synchronous FULL: a commit is on disk when it returns, so that a 201
//     survives a power loss, as the API promises;
//   - _txlock=immediate: a transaction takes the write lock when it begins,
//     so that two of them cannot both read and then fail to upgrade.
const params = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"

// Open opens the database file at path, creating it (readable and writable
// by its owner only) if it does not exist, and checks that it is an SQLite
// database. The directory must exist. Close the returned pool when done.
func Open(ctx context.Context, path string) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	// SQLite would create the file with the umask's permissions (often
	// world-readable); the devices' records are for the owner only. The
	// -wal and -shm files SQLite creates beside it take the same mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	// The pragmas run on connect: a file that is not a database fails here.
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	return db, nil
}

// dsn is a file: URI for path, so that a path may contain '?' or '#'
// (SQLite decodes %XX escapes in it; the driver reads the parameters).
func dsn(path string) string {
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))
	return "file:" + escaped + "?" + params
}
