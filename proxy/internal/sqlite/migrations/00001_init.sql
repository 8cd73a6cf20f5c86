-- +goose Up
-- The embedded store's schema: the same tables, columns and meaning as the
-- PostgreSQL migration of the same number (proxy/internal/postgres), in
-- SQLite's terms. Times are INTEGER unix microseconds, UTC (PostgreSQL keeps
-- microseconds too), so that they compare in SQL as numbers:
--   SELECT id, datetime(expires_at / 1000000, 'unixepoch') FROM sessions;
-- Booleans are INTEGER 0/1. STRICT tables refuse a value of the wrong type.

-- A device is the tenant: users, sessions and records belong to one.
CREATE TABLE devices (
    id         TEXT NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT;

-- id is a UUID (version 4, text) made by the proxy: SQLite has no
-- gen_random_uuid().
CREATE TABLE users (
    id            TEXT NOT NULL PRIMARY KEY,
    device_id     TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (device_id, username)
) STRICT;

-- One row per session. The token carries the id; nothing here can be
-- replayed as a token. Operators query expires_at, so its name is fixed.
CREATE TABLE sessions (
    id               TEXT NOT NULL PRIMARY KEY,
    device_id        TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    user_id          TEXT REFERENCES users (id) ON DELETE CASCADE,
    is_admin         INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    generation       INTEGER NOT NULL DEFAULT 0,
    prev_valid_until INTEGER,
    created_at       INTEGER NOT NULL,
    refreshed_at     INTEGER,
    expires_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    client_addr      TEXT NOT NULL DEFAULT '',
    user_agent       TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX sessions_device_id_idx ON sessions (device_id);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- The generated signing key, kept so that tokens survive restarts.
CREATE TABLE signing_keys (
    id          TEXT NOT NULL PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE sessions;
DROP TABLE users;
DROP TABLE devices;
