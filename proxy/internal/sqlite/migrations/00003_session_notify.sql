-- +goose Up
-- Nothing to do. In PostgreSQL, migration 00003 adds the trigger that
-- NOTIFYs every replica of a changed session. The embedded store serves one
-- process, which evicts its own cache as it makes each change, and SQLite
-- has no LISTEN/NOTIFY. The version is kept so that both stores number
-- their migrations alike and `proxy migrate status` reads the same.

-- +goose Down
