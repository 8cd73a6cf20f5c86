-- +goose Up
-- The embedded store's twin of the PostgreSQL migration with the same
-- version and name. One row per (device, key). SQLite compares text with
-- memcmp (the BINARY collation), so keys order by their UTF-8 bytes as under
-- PostgreSQL's "C" collation, and the primary key's index serves lookups and
-- prefix lists. data and meta hold compact JSON text, checked by the store
-- (SQLite's JSON functions stop at 1000 levels of nesting, PostgreSQL does
-- not). Times are UTC text with six fractional digits, 2024-05-01T12:00:00.123456Z,
-- which sorts as it reads. STRICT refuses a value of another type, such as
-- a BLOB where TEXT belongs.
CREATE TABLE storage_records (
    device_id  TEXT NOT NULL,
    key        TEXT NOT NULL,
    data       TEXT NOT NULL,
    meta       TEXT NOT NULL DEFAULT '{}' CHECK (substr(meta, 1, 1) = '{'),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (device_id, key)
) STRICT;

-- +goose Down
DROP TABLE storage_records;
