-- +goose Up
-- Consecutive failed logins per account (device + username), known or not:
-- an unknown account locks the same way, so a lockout reveals nothing.
-- locked_until and updated_at are unix microseconds, UTC.
CREATE TABLE login_failures (
    device_id    TEXT NOT NULL,
    username     TEXT NOT NULL,
    failures     INTEGER NOT NULL DEFAULT 0,
    lockouts     INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (device_id, username)
) STRICT;
CREATE INDEX login_failures_updated_at_idx ON login_failures (updated_at);

-- +goose Down
DROP TABLE login_failures;
