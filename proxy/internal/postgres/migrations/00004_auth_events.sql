-- +goose Up
-- The audit trail: one row per event, written by the store in the same
-- transaction as the change it records. Rows name devices and users by
-- value, not by reference, so that the trail outlives what it speaks of.
CREATE TABLE auth_events (
    id          bigserial PRIMARY KEY,
    time        timestamptz NOT NULL,
    type        text NOT NULL,
    device_id   text NOT NULL DEFAULT '',
    username    text NOT NULL DEFAULT '',
    session_id  text NOT NULL DEFAULT '',
    actor       text NOT NULL DEFAULT '',
    reason      text NOT NULL DEFAULT '',
    client_addr text NOT NULL DEFAULT ''
);
-- Retention deletes by time; the admin API and the CLI read by device.
CREATE INDEX auth_events_time_idx ON auth_events (time);
CREATE INDEX auth_events_device_time_idx ON auth_events (device_id, time);

-- +goose Down
DROP TABLE auth_events;
