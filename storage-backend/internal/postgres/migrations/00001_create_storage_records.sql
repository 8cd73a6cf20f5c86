-- +goose Up
-- One row per (device, key). Keys use the "C" collation so that listing
-- orders them by their bytes, the same on every server whatever its locale,
-- and so that the primary key's index also serves prefix searches.
CREATE TABLE storage_records (
    device_id  text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    data       jsonb NOT NULL,
    meta       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(meta) = 'object'),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (device_id, key)
);

-- +goose Down
DROP TABLE storage_records;
