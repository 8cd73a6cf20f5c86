-- +goose Up
-- Device authorization requests (RFC 8628). The device code is never
-- stored: code_hash is its SHA-256, and the token an approval starts waits
-- in sealed_token encrypted to public_key, which only the device code
-- opens. A user code is unique among the rows kept; an expired row with
-- the same user code is deleted when a new request takes its code.
-- device_id and session_id are values, not references: codes are issued
-- to unknown devices too (a login does not say which devices exist), and
-- a request outlives its session.
CREATE TABLE device_codes (
    id               text PRIMARY KEY,
    code_hash        text NOT NULL UNIQUE,
    user_code        text NOT NULL UNIQUE,
    device_id        text NOT NULL,
    public_key       bytea NOT NULL,
    client_addr      text NOT NULL DEFAULT '',
    user_agent       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    interval_seconds integer NOT NULL,
    last_polled_at   timestamptz,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'approved', 'denied', 'redeemed')),
    decided_at       timestamptz,
    session_id       text NOT NULL DEFAULT '',
    sealed_token     bytea
);
CREATE INDEX device_codes_expires_at_idx ON device_codes (expires_at);

-- Unknown user codes per client address, in windows that start with their
-- first guess: what limits guessing at the codes of other people's
-- headsets, shared by every replica.
CREATE TABLE device_code_guesses (
    client_addr  text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    failures     integer NOT NULL
);
CREATE INDEX device_code_guesses_window_start_idx ON device_code_guesses (window_start);

-- +goose Down
DROP TABLE device_code_guesses;
DROP TABLE device_codes;
