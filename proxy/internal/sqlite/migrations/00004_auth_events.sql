-- +goose Up
-- The audit trail: one row per event, written by the store in the same
-- transaction as the change it records. Rows name devices and users by
-- value, not by reference, so that the trail outlives what it speaks of.
-- time is unix microseconds, UTC.
CREATE TABLE auth_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        INTEGER NOT NULL,
    type        TEXT NOT NULL,
    device_id   TEXT NOT NULL DEFAULT '',
    username    TEXT NOT NULL DEFAULT '',
    session_id  TEXT NOT NULL DEFAULT '',
    actor       TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    client_addr TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX auth_events_time_idx ON auth_events (time);
CREATE INDEX auth_events_device_time_idx ON auth_events (device_id, time);

-- +goose Down
DROP TABLE auth_events;
