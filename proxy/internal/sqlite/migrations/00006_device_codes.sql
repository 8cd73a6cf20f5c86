-- +goose Up
-- Device authorization requests (RFC 8628), as in the PostgreSQL store's
-- migration 00006: the device code is never stored (code_hash is its
-- SHA-256), and an approval's token waits in sealed_token encrypted to
-- public_key. Times are unix microseconds, UTC.
CREATE TABLE device_codes (
    id               TEXT PRIMARY KEY,
    code_hash        TEXT NOT NULL UNIQUE,
    user_code        TEXT NOT NULL UNIQUE,
    device_id        TEXT NOT NULL,
    public_key       BLOB NOT NULL,
    client_addr      TEXT NOT NULL DEFAULT '',
    user_agent       TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    interval_seconds INTEGER NOT NULL,
    last_polled_at   INTEGER,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    decided_at       INTEGER,
    session_id       TEXT NOT NULL DEFAULT '',
    sealed_token     BLOB
) STRICT;
CREATE INDEX device_codes_expires_at_idx ON device_codes (expires_at);

-- Unknown user codes per client address, in windows that start with their
-- first guess.
CREATE TABLE device_code_guesses (
    client_addr  TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures     INTEGER NOT NULL
) STRICT;
CREATE INDEX device_code_guesses_window_start_idx ON device_code_guesses (window_start);

-- +goose Down
DROP TABLE device_code_guesses;
DROP TABLE device_codes;
