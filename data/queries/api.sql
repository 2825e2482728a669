-- Queries of the scheduler's HTTP API and of zephyr/taskstore.py (shared with the Admin gRPC service).
-- Task reads return the task's columns plus `last_run` (jsonb of its newest run, or NULL), from
-- task_last_run() (data/migrations/0008_task_last_run.sql), which the planner inlines.
-- Ids are UUIDv7, so `ORDER BY id` is creation order; keyset pages go newest first (`id < $before`).

-- name: ping
SELECT 1

-- name: get_task
-- $1 task id
SELECT t.*, lr.last_run
FROM tasks t
LEFT JOIN LATERAL task_last_run(t.id) lr ON true
WHERE t.id = $1

-- name: get_task_by_idempotency_key
-- $1 idempotency key
SELECT t.*, lr.last_run
FROM tasks t
LEFT JOIN LATERAL task_last_run(t.id) lr ON true
WHERE t.idempotency_key = $1

-- name: insert_task
-- Insert one task (or nothing when the idempotency key exists: the caller then reads the first
-- task), and NOTIFY zephyr_tasks in the same transaction when $14 is given; with $14 NULL the
-- caller notifies once this has committed (zephyr/scheduler/notifier.py says when and why).
-- No row back means a repeat.
-- $1 id, $2 name, $3 type, $4 payload, $5 schedule, $6 recurring, $7 overlap, $8 priority,
-- $9 max_attempts, $10 timeout_s, $11 next_run_at, $12 idempotency_key, $13 traceparent or NULL,
-- $14 notify payload (RFC 3339) or NULL; payload and schedule are JSON text (serialised once by the
-- API, not again by a jsonb codec)
WITH ins AS (
    INSERT INTO tasks (id, name, type, payload, schedule, recurring, overlap, priority,
                       max_attempts, timeout_s, next_run_at, idempotency_key, traceparent)
    VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb, $6, $7, $8, $9, $10, $11, $12, $13)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING *
)
SELECT ins.*, NULL::jsonb AS last_run,
       CASE WHEN $14::text IS NOT NULL THEN pg_notify('zephyr_tasks', $14)::text END AS notified
FROM ins

-- name: insert_tasks_batch
-- All rows in one statement (all or nothing), NOTIFY with the earliest next_run_at (one notifying
-- commit, so one turn of PostgreSQL's NOTIFY lock, per batch: unlike single inserts, batches keep
-- the NOTIFY in their own transaction), and the ids in
-- input order: a row whose idempotency key already existed answers the existing task's id
-- (NULL when that task committed after this statement began: the caller looks it up).
-- $1 ids; $2 names, $3 types, $4 payloads, $5 schedules, $6 recurring, $7 overlap, $8 priorities,
-- $9 max_attempts, $10 timeouts, $11 next_run_at, $12 idempotency keys, $13 traceparents: each an array of one value
-- per id, or of a single value that every row takes (the API sends a value the whole batch shares
-- once: each array element costs it about a microsecond to encode); payloads and schedules are
-- JSON text (serialised once by the API, not again by a jsonb codec)
WITH input AS (
    SELECT u.ord, u.id,
           ($2::text[])[least(u.ord, cardinality($2::text[]))] AS name,
           ($3::text[])[least(u.ord, cardinality($3::text[]))] AS type,
           ($4::text[])[least(u.ord, cardinality($4::text[]))] AS payload,
           ($5::text[])[least(u.ord, cardinality($5::text[]))] AS schedule,
           ($6::boolean[])[least(u.ord, cardinality($6::boolean[]))] AS recurring,
           ($7::boolean[])[least(u.ord, cardinality($7::boolean[]))] AS overlap,
           ($8::integer[])[least(u.ord, cardinality($8::integer[]))] AS priority,
           ($9::integer[])[least(u.ord, cardinality($9::integer[]))] AS max_attempts,
           ($10::float8[])[least(u.ord, cardinality($10::float8[]))] AS timeout_s,
           ($11::timestamptz[])[least(u.ord, cardinality($11::timestamptz[]))] AS next_run_at,
           ($12::text[])[least(u.ord, cardinality($12::text[]))] AS idempotency_key,
           ($13::text[])[least(u.ord, cardinality($13::text[]))] AS traceparent
    FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, ord)
),
ins AS (
    INSERT INTO tasks (id, name, type, payload, schedule, recurring, overlap, priority,
                       max_attempts, timeout_s, next_run_at, idempotency_key, traceparent)
    SELECT id, name, type, payload::jsonb, schedule::jsonb, recurring, overlap, priority,
           max_attempts, timeout_s, next_run_at, idempotency_key, traceparent
    FROM input ORDER BY ord
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, next_run_at
),
notified AS (
    SELECT count(*) AS n
    FROM (SELECT min(next_run_at) AS first FROM ins) f,
         LATERAL (SELECT pg_notify('zephyr_tasks',
                      to_char(f.first AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))) p
    WHERE f.first IS NOT NULL
)
SELECT input.ord, coalesce(ins.id, existing.id) AS id, ins.id IS NOT NULL AS created,
       (SELECT n FROM notified) AS notified
FROM input
LEFT JOIN ins ON ins.id = input.id
LEFT JOIN tasks existing ON ins.id IS NULL AND existing.idempotency_key = input.idempotency_key
ORDER BY input.ord

-- name: list_tasks
-- Newest first. $1 before id (exclusive; the largest uuid for the first page), $2 limit
SELECT t.*, lr.last_run
FROM tasks t
LEFT JOIN LATERAL task_last_run(t.id) lr ON true
WHERE t.id < $1
ORDER BY t.id DESC
LIMIT $2

-- name: list_tasks_by_name
-- Pages on tasks_name_status_type_id_idx (migration 0011). $1 before id, $2 limit, $3 name, $4
-- status or NULL, $5 type or NULL. The (status, type) pairs of the name come from a loose index scan
-- (one probe per pair); each wanted pair gives its newest $2 ids below $1 (one index range each), and
-- the newest $2 of those are the page: at most pairs x $2 ids read, whatever the table holds.
-- A pair's page is read as "the $2 entries before (status, type, $1)" and its own rows kept after
-- the LIMIT: written as `status = p.status AND type = p.type AND id < $1 ORDER BY id DESC`, the
-- planner may walk tasks_pkey backwards filtering on status and type (it did, on 100,000 fresh
-- rows), which reads every task of the other pairs; the row comparison and the ORDER BY by the
-- index's columns leave no way but this index.
WITH RECURSIVE pairs AS (
    (SELECT t.status, t.type FROM tasks t WHERE t.name = $3 ORDER BY t.name, t.status, t.type LIMIT 1)
    UNION ALL
    SELECT n.status, n.type
    FROM pairs p
    CROSS JOIN LATERAL (
        SELECT t.status, t.type FROM tasks t
        WHERE t.name = $3 AND (t.status, t.type) > (p.status, p.type)
        ORDER BY t.name, t.status, t.type
        LIMIT 1
    ) n
), page AS (
    SELECT k.id
    FROM pairs p
    CROSS JOIN LATERAL (
        SELECT t.id, t.status, t.type FROM tasks t
        WHERE t.name = $3 AND (t.status, t.type, t.id) < (p.status, p.type, $1)
        ORDER BY t.name DESC, t.status DESC, t.type DESC, t.id DESC
        LIMIT $2
    ) k
    WHERE ($4::text IS NULL OR p.status = $4) AND ($5::text IS NULL OR p.type = $5)
      AND k.status = p.status AND k.type = p.type
    ORDER BY k.id DESC
    LIMIT $2
)
SELECT t.*, lr.last_run
FROM page
JOIN tasks t ON t.id = page.id
LEFT JOIN LATERAL task_last_run(t.id) lr ON true
ORDER BY t.id DESC

-- name: list_tasks_by_status_type
-- Pages on tasks_status_type_id_idx (migration 0011). $1 before id, $2 limit, $3 status or NULL, $4
-- type or NULL (one of them given). As list_tasks_by_name: the (status, type) pairs that exist come
-- from a loose index scan, each wanted pair gives its newest $2 ids below $1, the newest $2 of those
-- are the page.
WITH RECURSIVE pairs AS (
    (SELECT t.status, t.type FROM tasks t ORDER BY t.status, t.type LIMIT 1)
    UNION ALL
    SELECT n.status, n.type
    FROM pairs p
    CROSS JOIN LATERAL (
        SELECT t.status, t.type FROM tasks t
        WHERE (t.status, t.type) > (p.status, p.type)
        ORDER BY t.status, t.type
        LIMIT 1
    ) n
), page AS (
    SELECT k.id
    FROM pairs p
    CROSS JOIN LATERAL (
        SELECT t.id, t.status, t.type FROM tasks t
        WHERE (t.status, t.type, t.id) < (p.status, p.type, $1)
        ORDER BY t.status DESC, t.type DESC, t.id DESC
        LIMIT $2
    ) k
    WHERE ($3::text IS NULL OR p.status = $3) AND ($4::text IS NULL OR p.type = $4)
      AND k.status = p.status AND k.type = p.type
    ORDER BY k.id DESC
    LIMIT $2
)
SELECT t.*, lr.last_run
FROM page
JOIN tasks t ON t.id = page.id
LEFT JOIN LATERAL task_last_run(t.id) lr ON true
ORDER BY t.id DESC

-- name: lock_task
-- $1 task id. Serialises state changes of one task (API against API, API against coordinator).
SELECT id, type, status, next_run_at FROM tasks WHERE id = $1 FOR UPDATE

-- name: set_task_cancelled
-- $1 task id
UPDATE tasks SET status = 'cancelled', next_run_at = NULL, updated_at = now() WHERE id = $1

-- name: request_run_cancels
-- Tells the coordinators to stop the task's running runs (the one holding the run's worker stream
-- sends Cancel). Reads the runs without locking them: the cancel locks only the task, so it can
-- never wait in a cycle with a run's ending, which locks the run and then its task. The cancel
-- sweep finds the runs again by their task's status. $1 task id
SELECT r.id, pg_notify('zephyr_cancel', r.id::text)::text AS notified
FROM task_runs r
WHERE r.task_id = $1 AND r.status = 'running'

-- name: set_task_retried
-- A dead task runs again now with its attempts reset. $1 task id
UPDATE tasks SET status = 'pending', attempts = 0, next_run_at = now(), updated_at = now()
WHERE id = $1
RETURNING next_run_at

-- name: set_task_paused
-- $1 task id
UPDATE tasks SET status = 'paused', updated_at = now() WHERE id = $1

-- name: set_task_resumed
-- Back to pending; a next_run_at in the past makes it due at once. $1 task id
UPDATE tasks SET status = 'pending', updated_at = now(),
                 next_run_at = coalesce(next_run_at, now())
WHERE id = $1
RETURNING next_run_at

-- name: patch_task
-- $1 id, $2 payload or NULL (unchanged), $3 priority or NULL, $4 max_attempts or NULL,
-- $5 schedule given (bool), $6 schedule, $7 recurring, $8 overlap, $9 next_run_at
UPDATE tasks SET
    payload = coalesce($2, payload),
    priority = coalesce($3, priority),
    max_attempts = coalesce($4, max_attempts),
    schedule = CASE WHEN $5 THEN $6 ELSE schedule END,
    recurring = CASE WHEN $5 THEN $7 ELSE recurring END,
    overlap = CASE WHEN $5 THEN $8 ELSE overlap END,
    next_run_at = CASE WHEN $5 AND status IN ('pending', 'paused') THEN $9 ELSE next_run_at END,
    updated_at = now()
WHERE id = $1
RETURNING status, next_run_at

-- name: notify_tasks
-- In the caller's transaction, or alone: a NOTIFY-only transaction writes no WAL of its own, so it
-- commits without waiting for a flush.
-- $1 earliest next_run_at of the change, RFC 3339
SELECT pg_notify('zephyr_tasks', $1)::text

-- name: task_exists
-- $1 task id
SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1)

-- name: list_runs
-- Newest first. $1 task id, $2 before run id (exclusive), $3 limit
SELECT * FROM task_runs
WHERE task_id = $1 AND id < $2
ORDER BY task_id DESC, id DESC
LIMIT $3

-- name: get_run
-- $1 run id
SELECT * FROM task_runs WHERE id = $1

-- name: run_status
-- $1 run id
SELECT status FROM task_runs WHERE id = $1

-- name: list_logs
-- Oldest first. $1 run id, $2 after log id (exclusive), $3 limit
SELECT id, ts, stream, line FROM task_logs
WHERE run_id = $1 AND id > $2
ORDER BY run_id, id
LIMIT $3

-- name: set_worker_draining
-- $1 id
UPDATE workers SET status = 'draining' WHERE id = $1 AND status <> 'gone'
RETURNING *

-- name: notify_drain
-- In the transaction that marks the worker draining: the coordinator holding its stream sends Drain.
-- $1 worker_id
SELECT pg_notify('zephyr_drain', $1)

-- name: list_workers
SELECT * FROM workers ORDER BY id

-- name: fold_task_counts
-- Moves the task count log into task_counts (migration 0007); 0 when another fold is under way.
SELECT fold_task_counts()

-- name: stats
-- One round trip, bounded work however big the tables: task counts by status and type are exact
-- (task_counts plus the log its triggers append to, read in one snapshot: a few hundred rows at
-- most); the due tasks are read one priority at a time from tasks_claim_idx, oldest first, at most
-- $1 of them (queue depth and oldest due age by type; the oldest due age of all is exact); past
-- that many, the tasks not yet due are read instead, up to $1 too (`future`, NULL below the cap).
-- $1 cap on the due tasks read, $2 cap on the finished runs read for runs_per_s
WITH counts AS (
    SELECT status, type, sum(n)::bigint AS n
    FROM (SELECT status, type, n FROM task_counts
          UNION ALL
          SELECT status, type, n FROM task_count_deltas) c
    GROUP BY status, type
    HAVING sum(n) <> 0
), due AS (
    SELECT d.type, d.next_run_at
    FROM pending_priorities() p
    CROSS JOIN LATERAL (
        SELECT t.type, t.next_run_at FROM tasks t
        WHERE t.status = 'pending' AND t.priority = p.priority AND t.next_run_at <= now()
        ORDER BY t.next_run_at
        LIMIT $1
    ) d
    WHERE p.earliest <= now()
    LIMIT $1
), future AS (
    -- Only when the due rows reached the cap: pending tasks not yet due, at most $1 of them. Below
    -- the cap, the queue depth is the exact pending count less these.
    SELECT f.type
    FROM pending_priorities() p
    CROSS JOIN LATERAL (
        SELECT t.type FROM tasks t
        WHERE t.status = 'pending' AND t.priority = p.priority AND t.next_run_at > now()
        LIMIT $1
    ) f
    WHERE (SELECT count(*) FROM due) >= $1
    LIMIT $1
)
SELECT
    (SELECT coalesce(jsonb_agg(jsonb_build_array(status, type, n)), '[]') FROM counts) AS counts,
    (SELECT CASE WHEN (SELECT count(*) FROM due) >= $1
                 THEN coalesce((SELECT jsonb_object_agg(type, n)
                                FROM (SELECT type, count(*) AS n FROM future GROUP BY type) f), '{}')
            END) AS future,
    (SELECT coalesce(jsonb_object_agg(type, jsonb_build_array(n, age_s)), '{}')
     FROM (SELECT type, count(*) AS n, extract(epoch FROM now() - min(next_run_at))::float8 AS age_s
           FROM due GROUP BY type) by_type) AS due,
    (SELECT extract(epoch FROM now() - min(earliest))::float8
     FROM pending_priorities() WHERE earliest <= now()) AS oldest_due_age_s,
    (SELECT coalesce(jsonb_object_agg(status, n), '{}')
     FROM (SELECT status, count(*) AS n FROM workers GROUP BY status) w) AS workers,
    -- A worker offers its types while it is active and its lease holds (rescue may not have run yet).
    (SELECT coalesce(array_agg(DISTINCT offered), '{}')
     FROM workers, unnest(task_types) AS offered
     WHERE status = 'active' AND lease_expires_at > now()) AS offered_types,
    -- The newest runs finished in the last minute, at most $2 of them (task_runs_finished_idx,
    -- newest first): how many, and when the oldest of them finished.
    (SELECT jsonb_build_array(count(*), extract(epoch FROM now() - min(finished_at))::float8)
     FROM (SELECT finished_at FROM task_runs
           WHERE finished_at > now() - interval '60 seconds'
           ORDER BY finished_at DESC
           LIMIT $2) recent) AS recent_runs

-- name: offered_task_types
-- Task types some active worker with a live lease offers (the submit's "no worker" warning).
SELECT coalesce(array_agg(DISTINCT offered), '{}')
FROM workers, unnest(task_types) AS offered
WHERE status = 'active' AND lease_expires_at > now()

-- name: activity
-- What happened in the last $2 seconds, for the dashboard; one round trip, each part reading at
-- most $1 rows. Task and run ids are UUIDv7 (milliseconds first), so "created since" is a range
-- of the primary key from the smallest id of that millisecond; runs that finished since use
-- task_runs_finished_idx. (Due work by type is in `stats`.)
-- $1 cap on the rows each part reads, $2 window in seconds
WITH since AS (
    SELECT now() - make_interval(secs => $2::float8) AS at,
           (lpad(to_hex(floor(extract(epoch FROM now() - make_interval(secs => $2::float8)) * 1000)::bigint),
                 12, '0') || '00000000000000000000')::uuid AS first_id
),
submitted AS (
    SELECT count(*) AS n FROM (SELECT 1 FROM tasks, since WHERE tasks.id >= since.first_id LIMIT $1) s
),
finished AS (
    SELECT coalesce(jsonb_object_agg(f.status, f.n), '{}'::jsonb) AS by_status, coalesce(sum(f.n), 0)::bigint AS n
    FROM (SELECT r.status, count(*) AS n
          FROM (SELECT status FROM task_runs, since
                WHERE finished_at > since.at AND finished_at IS NOT NULL LIMIT $1) r
          GROUP BY r.status) f
),
started AS (
    SELECT greatest(0, extract(epoch FROM r.started_at - r.scheduled_for))::float8 AS delay_s
    FROM task_runs r, since
    WHERE r.id >= since.first_id AND r.attempt = 1
    ORDER BY r.id DESC
    LIMIT $1
),
latency AS (
    SELECT count(*) AS runs,
           percentile_cont(ARRAY[0.5, 0.9, 0.99]::float8[]) WITHIN GROUP (ORDER BY delay_s) AS p,
           max(delay_s) AS max
    FROM started
)
SELECT submitted.n AS submitted, finished.n AS finished, finished.by_status AS finished_by_status,
       latency.runs, latency.p, latency.max
FROM submitted, finished, latency
