// Package sqlite is the proxy's embedded store: devices, users, sessions,
// login failures and the generated signing key in one SQLite file under the
// data directory, used when no PostgreSQL is configured. It mirrors the
// PostgreSQL store (package postgres) method for method, with the same
// errors, and the shared suite in package storetest runs against both.
//
// It is meant for one process. Writes from several processes on one file
// are safe (SQLite locks the file, and every write transaction begins
// IMMEDIATE), but nothing tells one process that another has revoked a
// session: for several replicas, use PostgreSQL.
//
// The driver is modernc.org/sqlite, a translation of SQLite to Go, so that
// builds and images stay cgo-free. Driver errors are translated here, at the
// boundary, into the errors of package auth.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/authsidecar/authsidecar/proxy/internal/auth"
	"github.com/authsidecar/authsidecar/proxy/internal/schema"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationsTable is the proxy's own version table, named as in the
// PostgreSQL store.
const migrationsTable = "authsidecar_proxy_migrations"

// FileName is the database file that Open keeps in the data directory.
// SQLite keeps FileName-wal and FileName-shm beside it while the database
// is open; the lock files of TryExclusive and of the migrations are
// FileName.*.lock.
const FileName = "proxy.db"

// busyTimeout is how long a statement waits for another process's write
// lock before it fails (and the caller gets auth.ErrUnavailable).
const busyTimeout = 10 * time.Second

// Store keeps devices, users, sessions and signing keys in a SQLite file.
// It is safe for concurrent use.
type Store struct {
	path string // the database file, absolute

	// read serves queries, several at once: in WAL mode readers never
	// wait for the writer.
	read *sql.DB
	// write has one connection, so that this process's writes queue in
	// order instead of contending for SQLite's lock and sleeping in its
	// busy handler. Its transactions begin IMMEDIATE: they take the write
	// lock first, so a transaction that reads then writes cannot fail
	// halfway with SQLITE_BUSY when another process writes.
	write *sql.DB

	closed atomic.Bool
}

// Open opens (and creates, when missing) the database FileName in dataDir.
// dataDir is created with mode 0700 and the database file with mode 0600
// when missing: the file holds password hashes and the signing key. Open
// does not migrate: see NewMigrator.
func Open(ctx context.Context, dataDir string) (*Store, error) {
	if dataDir == "" {
		return nil, errors.New("data directory: empty path")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(dataDir, FileName))
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	// Create the file before SQLite does, so that it is private from its
	// first byte: SQLite would make it 0644 (less the umask), and its -wal
	// and -shm files take the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("database file: %w", err)
	}

	s := &Store{path: path}
	s.write, err = sql.Open("sqlite", writeDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.write.SetMaxOpenConns(1)
	s.write.SetMaxIdleConns(1)
	s.write.SetConnMaxLifetime(0)
	s.write.SetConnMaxIdleTime(0)
	// The writer connects first: it switches the file to WAL (a lasting
	// property of the file) before any reader, which may not write, opens.
	if err := s.write.PingContext(ctx); err != nil {
		_ = s.write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.read, err = sql.Open("sqlite", readDSN(path))
	if err != nil {
		_ = s.write.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	s.read.SetMaxOpenConns(n)
	s.read.SetMaxIdleConns(n)
	if err := s.read.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// Path returns the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database. Every later call fails with
// auth.ErrUnavailable.
func (s *Store) Close() error {
	s.closed.Store(true)
	return errors.Join(s.read.Close(), s.write.Close())
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var n int64
	return wrap("ping", s.read.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&n))
}

// dsn returns the URI of the database file path with the driver's
// parameters params. A URI rather than a plain name, so that a path holding
// '?' or '#' is escaped rather than cut.
func dsn(path string, params ...string) string {
	p := filepath.ToSlash(path)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive: file:/C:/...
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: p, RawQuery: strings.Join(params, "&")}
	return u.String()
}

// common are the settings of every connection. busy_timeout comes first:
// switching to WAL needs the lock it waits for.
var common = []string{
	fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()),
	"_pragma=foreign_keys(1)",
}

// writeDSN is for connections that write: WAL, so that readers never wait
// for the writer; synchronous FULL, so that a committed revocation survives
// a power cut (NORMAL could lose it, and bring a revoked session back);
// IMMEDIATE transactions.
func writeDSN(path string) string {
	return dsn(path, slices.Concat(common, []string{"_pragma=journal_mode(WAL)", "_pragma=synchronous(FULL)", "_txlock=immediate"})...)
}

// readDSN is for the readers, which the driver makes unable to write.
func readDSN(path string) string {
	return dsn(path, slices.Concat(common, []string{"_query_only=1"})...)
}

// errClosed is what calls on a closed Store fail with (as ErrUnavailable).
var errClosed = errors.New("sqlite store is closed")

// NewMigrator returns a Migrator for the database of s. Several migrators
// (in this process or others) may run at once: a lock file beside the
// database lets one apply while the others wait and then find nothing left
// to do. Close the Migrator when done; it has a connection of its own.
func NewMigrator(ctx context.Context, s *Store) (*schema.Migrator, error) {
	if s.closed.Load() {
		return nil, wrap("open migrations", errClosed)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	db, err := sql.Open("sqlite", writeDSN(s.path))
	if err != nil {
		return nil, wrap("open migrations", err)
	}
	db.SetMaxOpenConns(2)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, wrap("open migrations", err)
	}
	m, err := schema.New(db, goose.DialectSQLite3, sub, migrationsTable,
		goose.WithLocker(&migrationLock{path: s.path + ".migrate.lock"}))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return m, nil
}

// tx runs fn in one write transaction (BEGIN IMMEDIATE), committed when
// fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// wrap translates driver errors into the errors of package auth, as the
// PostgreSQL store does: no rows is ErrNotFound, a unique violation is
// ErrConflict, a missing referenced row or a failed check is ErrNotFound
// (the input, not the store), and anything else (a closed store, a lock
// held too long by another process, a full disk) is ErrUnavailable, so
// that callers fail closed.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, auth.ErrNotFound)
	}
	var e *msqlite.Error
	if errors.As(err, &e) {
		switch e.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%s: %w", op, auth.ErrConflict)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY, sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_DATATYPE:
			return fmt.Errorf("%s: %w: %w", op, auth.ErrNotFound, err)
		}
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, auth.ErrUnavailable, err)
}

// Times are kept as INTEGER unix microseconds, UTC: PostgreSQL keeps
// microseconds too (and truncates alike), and numbers compare in SQL
// without any question of format.

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// nullTime is a nullable time column: NULL reads as the zero time.
func nullTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// nowMicros is the time of rows the database stamps itself in PostgreSQL
// (created_at DEFAULT now()).
func nowMicros() int64 { return micros(time.Now()) }

// newUUID returns a random (version 4) UUID in its canonical text form,
// as PostgreSQL's gen_random_uuid() would make for a user's id.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
