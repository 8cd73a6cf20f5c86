-- +goose Up
-- A device is the tenant: users, sessions and records belong to one.
CREATE TABLE devices (
    id         text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id     text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    username      text NOT NULL,
    password_hash text NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, username)
);

-- One row per session. The token carries the id; nothing here can be
-- replayed as a token. Operators query expires_at, so its name is fixed.
CREATE TABLE sessions (
    id               text PRIMARY KEY,
    device_id        text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    user_id          uuid REFERENCES users (id) ON DELETE CASCADE,
    is_admin         boolean NOT NULL DEFAULT false,
    generation       bigint NOT NULL DEFAULT 0,
    prev_valid_until timestamptz,
    created_at       timestamptz NOT NULL,
    refreshed_at     timestamptz,
    expires_at       timestamptz NOT NULL,
    revoked_at       timestamptz,
    client_addr      text NOT NULL DEFAULT '',
    user_agent       text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX sessions_device_id_idx ON sessions (device_id);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- The generated signing key, kept so that tokens survive restarts and every
-- replica signs and verifies with the same key.
CREATE TABLE signing_keys (
    id          text PRIMARY KEY,
    private_pem text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE signing_keys;
DROP TABLE sessions;
DROP TABLE users;
DROP TABLE devices;
