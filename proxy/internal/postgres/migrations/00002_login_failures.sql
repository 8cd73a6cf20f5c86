-- +goose Up
-- Consecutive failed logins per account (device + username), known or not:
-- an unknown account locks the same way, so a lockout reveals nothing.
CREATE TABLE login_failures (
    device_id    text NOT NULL,
    username     text NOT NULL,
    failures     integer NOT NULL DEFAULT 0,
    lockouts     integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (device_id, username)
);
CREATE INDEX login_failures_updated_at_idx ON login_failures (updated_at);

-- +goose Down
DROP TABLE login_failures;
