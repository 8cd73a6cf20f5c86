-- +goose Up
-- When a session was last used, as replicas record it lazily in batches
-- (SESSION_IDLE_TIMEOUT); NULL until the first record: the session's
-- creation then stands for it. Its updates notify nobody (the trigger of
-- 00003 does not look at it): a use changes nothing a cache serves.
ALTER TABLE sessions ADD COLUMN last_seen_at timestamptz;

-- +goose Down
ALTER TABLE sessions DROP COLUMN last_seen_at;
