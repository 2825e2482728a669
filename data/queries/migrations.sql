-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: lock_migrations
-- Transaction-scoped advisory lock: services starting together migrate one at a time.
SELECT pg_advisory_xact_lock(7411000001);

-- name: applied_migrations
SELECT version FROM schema_migrations;

-- name: record_migration
-- $1 version text
INSERT INTO schema_migrations (version) VALUES ($1);
