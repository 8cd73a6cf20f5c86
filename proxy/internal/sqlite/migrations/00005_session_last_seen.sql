-- +goose Up
-- When a session was last used, as the proxy records it lazily in batches
-- (SESSION_IDLE_TIMEOUT), in unix microseconds; NULL until the first
-- record: the session's creation then stands for it.
ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;

-- +goose Down
ALTER TABLE sessions DROP COLUMN last_seen_at;
