-- +goose Up
-- Every change that ends or shortens a live session tells every replica, in
-- the same transaction: replicas cache live sessions and evict on this
-- notification. A trigger rather than application code, so that nothing —
-- not a cascade from a deleted user, not an operator's hand-written UPDATE —
-- can change a session without the caches hearing of it.
--
-- The channel is per schema (several deployments, or test runs, may share a
-- database) and short enough for PostgreSQL's 63-byte identifiers.
-- +goose StatementBegin
CREATE FUNCTION authsidecar_session_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('authsidecar_' || left(md5(TG_TABLE_SCHEMA), 16), OLD.id);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

-- Deleting rows that had already expired (the janitor's work) changes
-- nothing a cache could serve: every replica refuses them by expires_at.
CREATE TRIGGER sessions_changed_update AFTER UPDATE ON sessions
    FOR EACH ROW
    WHEN (NEW.revoked_at IS DISTINCT FROM OLD.revoked_at
          OR NEW.generation IS DISTINCT FROM OLD.generation
          OR NEW.expires_at < OLD.expires_at
          OR NEW.prev_valid_until IS DISTINCT FROM OLD.prev_valid_until
          OR NEW.is_admin IS DISTINCT FROM OLD.is_admin
          OR NEW.user_id IS DISTINCT FROM OLD.user_id)
    EXECUTE FUNCTION authsidecar_session_changed();

CREATE TRIGGER sessions_changed_delete AFTER DELETE ON sessions
    FOR EACH ROW
    WHEN (OLD.expires_at > now() AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION authsidecar_session_changed();

-- +goose Down
DROP TRIGGER sessions_changed_delete ON sessions;
DROP TRIGGER sessions_changed_update ON sessions;
DROP FUNCTION authsidecar_session_changed();
