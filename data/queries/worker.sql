-- name: publish_notify
-- The `publish` executor's NOTIFY on the ZEPHYR_PUBLISH_DATABASE_URL database (no Zephyr tables).
-- $1 channel text, $2 payload text
SELECT pg_notify($1, $2);
