-- Queries the benchmark harness runs against Zephyr's tables (read-only except the big-table load).

-- name: bench_settings
-- $1 setting names
SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name;

-- name: bench_count_running_runs
SELECT count(*) FROM task_runs WHERE status = 'running';

-- name: bench_count_running_runs_by_worker
-- How many runs each worker holds right now.
SELECT worker_id, count(*) AS running FROM task_runs WHERE status = 'running' GROUP BY worker_id;

-- name: bench_run_span
-- Count, first start and last finish of the runs that succeeded at or after $1 (an index range
-- scan on task_runs_finished_idx: cheap however many older rows the table holds).
-- $1 lower bound of finished_at
SELECT count(*) AS runs, min(started_at) AS first_started, max(finished_at) AS last_finished
FROM task_runs
WHERE finished_at >= $1 AND status = 'succeeded';

-- name: bench_count_succeeded_since
-- $1 lower bound of finished_at
SELECT count(*) FROM task_runs WHERE finished_at >= $1 AND status = 'succeeded';

-- name: bench_run_latencies
-- due -> started and due -> finished, in seconds, of the runs of the given tasks.
-- $1 task ids
SELECT extract(epoch FROM r.started_at - r.scheduled_for)::float8 AS to_start,
       extract(epoch FROM r.finished_at - r.scheduled_for)::float8 AS to_finish,
       r.status, r.scheduled_for
FROM task_runs r
WHERE r.task_id = ANY($1::uuid[]);

-- name: bench_runs_of_worker
-- Task ids of the runs a worker holds.
-- $1 worker id
SELECT task_id FROM task_runs WHERE worker_id = $1 AND status = 'running';

-- name: bench_count_running_elsewhere
-- How many of the given tasks have a running run on a worker other than $2.
-- $1 task ids, $2 worker id
SELECT count(DISTINCT task_id) FROM task_runs
WHERE task_id = ANY($1::uuid[]) AND status = 'running' AND worker_id <> $2;

-- name: bench_count_statuses
-- $1 task ids
SELECT status, count(*) AS n FROM tasks WHERE id = ANY($1::uuid[]) GROUP BY status;

-- name: bench_table_sizes
SELECT (SELECT count(*) FROM tasks) AS tasks, (SELECT count(*) FROM task_runs) AS task_runs;

-- name: bench_analyze
ANALYZE tasks, task_runs;

-- name: bench_vacuum_analyze
-- After the big-table load, so that autovacuum does not wake up in the middle of a measurement.
VACUUM (ANALYZE) tasks, task_runs;

-- name: bench_vacuum
-- Between the big-table burst and its trickle: what autovacuum does after a burst under the queue
-- tables' settings (migration 0005), done at once instead of within its next minute.
VACUUM tasks, task_runs;

-- name: bench_recovery_timeline
-- When the given tasks' runs on worker $2 were ended lost, and when their new runs elsewhere began.
-- $1 task ids, $2 the killed worker's id
SELECT min(finished_at) FILTER (WHERE status = 'lost' AND worker_id = $2) AS first_lost,
       max(finished_at) FILTER (WHERE status = 'lost' AND worker_id = $2) AS last_lost,
       min(started_at) FILTER (WHERE status = 'running' AND worker_id <> $2) AS first_restarted,
       max(started_at) FILTER (WHERE status = 'running' AND worker_id <> $2) AS last_restarted
FROM task_runs
WHERE task_id = ANY($1::uuid[]);

-- name: bench_worker_lease
-- $1 worker id
SELECT last_heartbeat_at, lease_expires_at FROM workers WHERE id = $1;

-- name: bench_checkpoint
-- Before a measurement (after the big-table load, before the trickle): the WAL written so far (by
-- the load, or by the scenarios before) goes out now, not in a checkpoint during the measurement.
CHECKPOINT;

-- name: bench_checkpoints
-- Checkpoints the server has begun since its statistics were reset (PostgreSQL 17 and later).
SELECT num_timed + num_requested FROM pg_stat_checkpointer;

-- name: bench_checkpoints_before_17
-- The same for PostgreSQL 16 and earlier.
SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter;

-- name: bench_setseed
SELECT setseed(0.17);

-- name: bench_fill_listed_tasks
-- $1 tasks, ids in creation order (UUIDv7-like, from a counter), the newest 5% pending (1% of those
-- running, 1% paused), the rest 98.5% succeeded, 1% dead, 0.5% cancelled; types 70% internal, 20%
-- http, 8% shell, 1.5% email, 0.5% publish; names 50% resize-image, 30% send-receipt, 1%
-- nightly-report, the rest sync-0 .. sync-999. The same rows after bench_setseed on the connection.
INSERT INTO tasks (id, name, type, payload, status, attempts, next_run_at, created_at, updated_at)
SELECT (lpad(to_hex(i), 12, '0') || '7' || substr(md5(i::text), 1, 19))::uuid,
       CASE WHEN r1 < 0.5 THEN 'resize-image' WHEN r1 < 0.8 THEN 'send-receipt'
            WHEN r1 < 0.99 THEN 'sync-' || (i % 1000) ELSE 'nightly-report' END,
       CASE WHEN r2 < 0.70 THEN 'internal' WHEN r2 < 0.90 THEN 'http' WHEN r2 < 0.98 THEN 'shell'
            WHEN r2 < 0.995 THEN 'email' ELSE 'publish' END,
       '{"function": "zephyr.noop", "args": [], "kwargs": {}}',
       CASE WHEN i > $1 * 0.95
            THEN (CASE WHEN r3 < 0.98 THEN 'pending' WHEN r3 < 0.99 THEN 'running' ELSE 'paused' END)
            ELSE (CASE WHEN r3 < 0.985 THEN 'succeeded' WHEN r3 < 0.995 THEN 'dead' ELSE 'cancelled' END)
       END,
       1,
       CASE WHEN i > $1 * 0.95 THEN now() + make_interval(secs => i - $1 * 0.95) END,
       now() - make_interval(secs => $1 - i), now()
FROM (SELECT i, random() AS r1, random() AS r2, random() AS r3 FROM generate_series(1, $1::bigint) i) g;

-- name: bench_middle_task_id
-- $1 offset: the id a middle page of the listings starts below
SELECT id FROM tasks ORDER BY id OFFSET $1 LIMIT 1;

-- name: bench_pending_ids
-- $1 how many
SELECT id FROM tasks WHERE status = 'pending' LIMIT $1;

-- name: bench_finish_tasks
-- A status change of many tasks at once (what endings do to the task rows and their indexes).
-- $1 task ids
UPDATE tasks SET status = 'succeeded', next_run_at = NULL, updated_at = now() WHERE id = ANY($1::uuid[]);

-- name: bench_insert_backlog
-- $1 count int: that many noop `internal` tasks, due now, in one statement (the backlog scenario)
INSERT INTO tasks (id, type, payload, next_run_at)
SELECT gen_random_uuid(), 'internal', '{"function": "zephyr.noop"}'::jsonb, now()
FROM generate_series(1, $1);

-- name: bench_count_succeeded_tasks
SELECT count(*) FROM tasks WHERE status = 'succeeded';
