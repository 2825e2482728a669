-- Coordinator queries: claim, completions, heartbeats, leases, maintenance, admin reads.
-- Every write that ends a run is fenced by (run id, attempt, worker, status = 'running').

-- name: claim_due
-- Claim and mark in one statement; the caller commits, then pushes the assignments.
-- $1 types text[]: task types the slot plan's workers offer
-- $2 slots text[]: worker id per slot, most deserving first; its length is the batch size
-- $3 run_ids uuid[]: one fresh run id per slot
-- $4 coordinator_id text
-- $5 grace_s float8: added to timeout_s for the deadline backstop
-- $6 now timestamptz, NULL for now()
--
-- Due rows are found one priority at a time, highest first (pending_priorities(): one index probe
-- per distinct priority), each due priority's rows read as one bounded range of tasks_claim_idx
-- (priority = p, next_run_at <= cutoff) in due order, stopping at the batch size. The cost stays
-- that of the rows claimed however many future or finished rows the table holds. The cutoff travels
-- as a column so that the planner sees an unknown bound: a plain `next_run_at <= now()` let it trust
-- stale statistics and read and sort every due row (45 ms per claim with 50,000 due), or, as a
-- generic plan, walk all future rows whenever fewer than a batch were due (53 ms with 1,000,000).
WITH due AS (
    SELECT d.id, d.priority, d.next_run_at, d.recurring, d.attempts, d.last_run_id
    FROM (SELECT priority, earliest, coalesce($6::timestamptz, now()) AS cutoff
          FROM pending_priorities()) p
    CROSS JOIN LATERAL (
        SELECT t.id, t.priority, t.next_run_at, t.recurring, t.attempts, t.last_run_id
        FROM tasks t
        WHERE t.status = 'pending'
          AND t.priority = p.priority
          AND t.next_run_at <= p.cutoff
          AND t.type = ANY ($1::text[])
        ORDER BY t.next_run_at
        LIMIT cardinality($2::text[])
        FOR UPDATE SKIP LOCKED
    ) d
    WHERE p.earliest <= p.cutoff
    LIMIT cardinality($2::text[])
), slotted AS (
    SELECT id, next_run_at, recurring, attempts, last_run_id,
           row_number() OVER (ORDER BY priority DESC, next_run_at, id) AS slot
    FROM due
), claimed AS (
    UPDATE tasks t
    SET status = 'running',
        attempts = t.attempts + 1,
        last_run_id = ($3::uuid[])[s.slot],
        updated_at = coalesce($6::timestamptz, now())
    FROM slotted s
    WHERE t.id = s.id
    -- A retry of a recurring task's firing keeps that firing's time: the schedule goes on from it.
    RETURNING t.id, t.name, t.type, t.payload, t.schedule, t.recurring, t.overlap, t.timeout_s,
              t.attempts, t.traceparent, s.slot,
              CASE WHEN s.recurring AND s.attempts > 0
                   THEN coalesce((SELECT r.scheduled_for FROM task_runs r WHERE r.id = s.last_run_id),
                                 s.next_run_at)
                   ELSE s.next_run_at END AS scheduled_for
), inserted AS (
    INSERT INTO task_runs (id, task_id, attempt, status, worker_id, coordinator_id, scheduled_for,
                           started_at, deadline_at)
    SELECT ($3::uuid[])[c.slot], c.id, c.attempts, 'running', ($2::text[])[c.slot], $4, c.scheduled_for,
           coalesce($6::timestamptz, now()),
           coalesce($6::timestamptz, now()) + make_interval(secs => c.timeout_s + $5::float8)
    FROM claimed c
)
-- The runs as inserted, computed from the claim itself: no join back to `inserted`.
SELECT ($3::uuid[])[c.slot] AS run_id, c.attempts AS attempt, ($2::text[])[c.slot] AS worker_id,
       c.scheduled_for, coalesce($6::timestamptz, now()) AS started_at,
       c.id AS task_id, c.name, c.type, c.payload::text AS payload_json, c.schedule, c.recurring,
       c.overlap, c.timeout_s, c.traceparent
FROM claimed c
ORDER BY c.slot;

-- name: reschedule_overlapping
-- Right after claim_due has committed, in a transaction of its own (`next_fire` is Python): overlap
-- recurring tasks go back to pending at their next firing (NULL next firing: the schedule ended, the
-- task stays running until its last run ends); if this fails, the run's end gives the task its next
-- firing (outcomes.decide). Only while the task is still running on the run just claimed: a cancel (or pause) that committed
-- since the claim stands.
-- A lost firing of the task waiting in overlap_reruns goes first: the task is due again at once at
-- that firing, pointing at its lost run (as outcomes.decide sets a rerun), and the entry is taken;
-- the claim of that rerun reschedules the task from there.
-- The earliest time set is announced on zephyr_tasks, like every return to pending: the timers
-- of the coordinators (this one's too) did not know of it.
-- $1 task_ids uuid[], $2 next_run_at timestamptz[], $3 run_ids uuid[]
WITH u AS (
    SELECT u.id, u.next_run_at, u.run_id, q.run_id AS rerun_id, q.scheduled_for AS rerun_at,
           q.attempts AS rerun_attempts
    FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[]) AS u (id, next_run_at, run_id)
    LEFT JOIN LATERAL (
        SELECT q.run_id, q.scheduled_for, q.attempts FROM overlap_reruns q
        WHERE q.task_id = u.id
        ORDER BY q.scheduled_for
        LIMIT 1
    ) q ON true
), rescheduled AS (
    UPDATE tasks t
    SET status = CASE WHEN u.rerun_id IS NULL AND u.next_run_at IS NULL THEN 'running' ELSE 'pending' END,
        next_run_at = CASE WHEN u.rerun_id IS NULL THEN u.next_run_at ELSE u.rerun_at END,
        attempts = coalesce(u.rerun_attempts, 0),
        last_run_id = coalesce(u.rerun_id, t.last_run_id)
    FROM u
    WHERE t.id = u.id AND t.status = 'running' AND t.last_run_id = u.run_id
    RETURNING t.next_run_at, u.rerun_id
), taken AS (
    DELETE FROM overlap_reruns q USING rescheduled r WHERE q.run_id = r.rerun_id
)
SELECT pg_notify('zephyr_tasks',
                 to_char(min(next_run_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
FROM rescheduled
WHERE next_run_at IS NOT NULL
HAVING count(*) > 0;

-- name: next_due
-- Seconds until the earliest pending task of these types is due (negative: overdue; NULL: none),
-- measured on the database clock, for the dispatcher's timer.
-- $1 types text[]
-- The earliest row of an offered type in each priority (a bounded scan of tasks_claim_idx).
SELECT extract(epoch FROM min(f.next_run_at) - now())::float8
FROM pending_priorities() p
CROSS JOIN LATERAL (
    SELECT t.next_run_at FROM tasks t
    WHERE t.status = 'pending' AND t.priority = p.priority AND t.type = ANY ($1::text[])
    ORDER BY t.next_run_at
    LIMIT 1
) f;

-- name: finish_runs
-- Fenced end of runs: only a run still running under that worker at that attempt changes.
-- Returns what deciding the task's next state needs, read from the task as it is now.
-- A run is running exactly while finished_at is NULL (task_runs_running_check). The fence says so
-- through finished_at because the partial indexes on status = 'running' would otherwise tempt the
-- planner: reading every running run, and every dead index entry left by the runs ended since the
-- last vacuum, is cheap by the statistics and grew through a burst; the runs are found by id.
-- Planned per batch (the coordinator's endings pool), so the plan knows the batch's size.
-- $1 run_ids uuid[], $2 attempts int[], $3 worker_ids text[], $4 statuses text[],
-- $5 results jsonb[] (NULL entries allowed), $6 errors jsonb[] (NULL entries allowed)
UPDATE task_runs r
SET status = u.status, finished_at = now(), result = u.result, error = u.error
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])
         AS u (id, attempt, worker_id, status, result, error),
     tasks t
WHERE r.id = u.id
  AND r.worker_id = u.worker_id
  -- The fence, as part of matching each ending to its run: the run is still running at that
  -- attempt. Not `r.finished_at IS NULL` on its own: a condition on runs alone is estimated from
  -- the statistics, and statistics taken when no run was running made the planner start from the
  -- runs (all of them, or the batch's compared with every ending) instead of from the batch.
  AND u.attempt = CASE WHEN r.finished_at IS NULL THEN r.attempt END
  AND t.id = r.task_id
RETURNING r.id AS run_id, r.task_id, r.attempt, r.worker_id, r.status, r.scheduled_for, r.started_at,
          t.status AS task_status, t.type, t.attempts, t.max_attempts, t.recurring, t.overlap,
          t.schedule, t.last_run_id;

-- name: finish_successes
-- Successes of one-off tasks, ended in one statement that commits alone: the fenced run update
-- (as finish_runs) and the task's move to succeeded (as update_tasks_after_runs, only while the
-- task is still running on that run). Runs of recurring tasks are left alone here: their next
-- firing is decided in Python, in the same transaction as their end (finish_runs). The caller
-- sends whatever this did not end through that path, which also refuses stale endings.
-- $1 run_ids uuid[], $2 attempts int[], $3 worker_ids text[], $4 results jsonb[] (NULL allowed)
WITH finished AS (
    UPDATE task_runs r
    SET status = 'succeeded', finished_at = now(), result = u.result, error = NULL
    FROM unnest($1::uuid[], $2::int[], $3::text[], $4::jsonb[]) AS u (id, attempt, worker_id, result),
         tasks t
    WHERE r.id = u.id
      AND r.worker_id = u.worker_id
      AND u.attempt = CASE WHEN r.finished_at IS NULL THEN r.attempt END  -- the fence, as in finish_runs
      AND t.id = r.task_id
      AND NOT t.recurring
    RETURNING r.id, r.task_id, r.attempt, r.worker_id, t.type
), settled AS (
    UPDATE tasks t
    SET status = 'succeeded', next_run_at = NULL, updated_at = now()
    FROM finished f
    -- Still running on that run, written as part of matching the run to its task: a condition
    -- on tasks alone (status = 'running') let a plan start from every running task.
    WHERE t.id = f.task_id AND f.id = CASE WHEN t.status = 'running' THEN t.last_run_id END
)
-- `settled` runs to completion unread, as every data-modifying WITH does.
SELECT f.id AS run_id, f.attempt, f.worker_id, f.type, 'succeeded' AS status FROM finished f;

-- name: update_tasks_after_runs
-- The task transitions decided from finished runs, applied only while the task is still in the
-- state the run left it and still points at that run: never over a cancel, pause or newer claim.
-- A repointed update (a lost firing of an overlap task run again) needs only a pending or running
-- task, and points the task at that run, whose firing the claim then reads.
-- Tasks put back to pending (retry, next firing) are announced on zephyr_tasks with the earliest
-- due time, in this transaction, so every coordinator sets its timer.
-- $1 task_ids uuid[], $2 run_ids uuid[], $3 expected_status text[], $4 status text[],
-- $5 next_run_at timestamptz[], $6 attempts int[], $7 repoint bool[]
WITH updated AS (
    UPDATE tasks t
    SET status = u.status, next_run_at = u.next_run_at, attempts = u.attempts, updated_at = now(),
        last_run_id = CASE WHEN u.repoint THEN u.run_id ELSE t.last_run_id END
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::bool[])
             AS u (id, run_id, expected, status, next_run_at, attempts, repoint)
    WHERE t.id = u.id
      AND (t.status = u.expected AND t.last_run_id = u.run_id
           -- an overlap task flips between pending and running at each firing's claim: the
           -- status read with the run's end may be stale by now; neither is a cancel or pause
           OR u.repoint AND t.status IN ('pending', 'running'))
    RETURNING t.id, t.status, t.next_run_at
)
SELECT count(*) AS updated,
       (SELECT pg_notify('zephyr_tasks',
                         to_char(min(next_run_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        FROM updated WHERE status = 'pending' HAVING count(*) > 0) AS notified
FROM updated;

-- name: overlap_reruns_held
-- Of these overlap tasks, those already holding a lost firing's rerun: pending, due at the firing
-- of the lost run they point at (outcomes.decide set it so).
-- $1 task_ids uuid[]
SELECT t.id
FROM tasks t
JOIN task_runs r ON r.id = t.last_run_id
WHERE t.id = ANY ($1::uuid[]) AND t.status = 'pending' AND r.status = 'lost'
  AND t.next_run_at = r.scheduled_for;

-- name: queue_overlap_reruns
-- Lost firings that wait for their task's rerun before them (see reschedule_overlapping).
-- $1 run_ids uuid[], $2 task_ids uuid[], $3 scheduled_for timestamptz[], $4 attempts int[]
INSERT INTO overlap_reruns (run_id, task_id, scheduled_for, attempts)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[])
ON CONFLICT (run_id) DO NOTHING;

-- name: upsert_worker
-- A worker (re)registers on this coordinator under a fresh registration id. Refused (no row) while
-- another live process holds the id: a worker row not gone, its lease running, another host or pid.
-- $1 id, $2 host, $3 pid int, $4 version, $5 capacity int, $6 task_types text[], $7 coordinator_id,
-- $8 lease_s float8, $9 registration uuid
INSERT INTO workers (id, host, pid, version, capacity, running, free_slots, status, task_types,
                     coordinator_id, registered_at, last_heartbeat_at, lease_expires_at, registration)
VALUES ($1, $2, $3, $4, $5, 0, $5, 'active', $6, $7, now(), now(), now() + make_interval(secs => $8::float8), $9)
ON CONFLICT (id) DO UPDATE
SET host = excluded.host, pid = excluded.pid, version = excluded.version, capacity = excluded.capacity,
    free_slots = excluded.free_slots, status = 'active', task_types = excluded.task_types,
    coordinator_id = excluded.coordinator_id, registered_at = now(), last_heartbeat_at = now(),
    lease_expires_at = excluded.lease_expires_at, registration = excluded.registration
WHERE workers.status = 'gone'
   OR workers.lease_expires_at < now()
   OR (workers.host = excluded.host AND workers.pid IS NOT DISTINCT FROM excluded.pid)
RETURNING id;

-- name: worker_holder
-- Who holds a worker id, for the error refusing a second process under it.
-- $1 id
SELECT host, pid, coordinator_id, extract(epoch FROM lease_expires_at - now())::float8 AS lease_left_s
FROM workers WHERE id = $1;

-- name: running_runs_of_worker
-- $1 worker_id
SELECT id, attempt FROM task_runs WHERE worker_id = $1 AND status = 'running';

-- name: heartbeat
-- One statement per heartbeat: renews the worker's lease (which holds all its runs), only for the
-- registration the stream made and only while the worker is not gone. No row: the stream is stale.
-- $1 id, $2 lease_s float8, $3 running int, $4 free_slots int, $5 load float8, $6 draining bool,
-- $7 coordinator_id, $8 registration uuid
UPDATE workers
SET lease_expires_at = now() + make_interval(secs => $2::float8),
    running = $3, free_slots = $4, load = $5, last_heartbeat_at = now(),
    status = CASE WHEN $6::bool OR status = 'draining' THEN 'draining' ELSE 'active' END,
    coordinator_id = $7
WHERE id = $1 AND registration = $8 AND status <> 'gone'
RETURNING id;

-- name: cancel_requested_runs
-- Running runs of cancelled tasks, among the given workers.
-- $1 worker_ids text[]
SELECT r.id, r.attempt, r.worker_id FROM task_runs r
JOIN tasks t ON t.id = r.task_id
WHERE r.status = 'running' AND t.status = 'cancelled' AND r.worker_id = ANY ($1::text[]);

-- name: run_for_cancel
-- $1 run_id uuid
SELECT id, attempt, worker_id FROM task_runs WHERE id = $1 AND status = 'running';

-- name: expire_workers
-- Workers silent past their lease are gone (SKIP LOCKED: concurrent coordinators split the work).
-- Ticks the rescue clock in the same statement: after a gap in the ticks longer than $2 (the
-- database, or every coordinator, was away) no worker expires until a lease ($1) has passed since,
-- so live streams renew first. One statement, one now(): a statement that waited through the
-- outage sees the gap it waited through.
-- $1 lease_s float8, $2 gap_s float8
WITH tick AS (
    UPDATE rescue_clock
    SET last_tick = now(),
        resumed_at = CASE WHEN now() - coalesce(last_tick, now()) > make_interval(secs => $2::float8)
                          THEN now() ELSE resumed_at END
    RETURNING resumed_at
)
UPDATE workers SET status = 'gone'
WHERE id IN (
    SELECT id FROM workers
    WHERE status <> 'gone' AND lease_expires_at < now()
      AND (SELECT resumed_at FROM tick) < now() - make_interval(secs => $1::float8)
    FOR UPDATE SKIP LOCKED
)
RETURNING id;

-- name: orphaned_runs
-- Running runs whose worker is gone or unknown: to be ended as lost. (A worker past its lease is
-- made gone by expire_workers first, which knows when a lapsed lease can be trusted.)
-- $1 limit int
SELECT r.id, r.attempt, r.worker_id
FROM task_runs r
LEFT JOIN workers w ON w.id = r.worker_id
WHERE r.status = 'running'
  AND (w.id IS NULL OR w.status = 'gone')
LIMIT $1;

-- name: overdue_runs
-- Running runs past their deadline (timeout_s + grace): the timeout backstop.
-- $1 limit int
SELECT id, attempt, worker_id FROM task_runs
WHERE status = 'running' AND deadline_at < now()
ORDER BY deadline_at
LIMIT $1;

-- name: delete_old_runs
-- Retention: finished runs (and, by cascade, their logs) older than the cutoff, one batch at a time.
-- A task's latest run is kept so that `last_run` stays readable.
-- $1 retention_s float8, $2 limit int
DELETE FROM task_runs
WHERE id IN (
    SELECT r.id FROM task_runs r
    WHERE r.finished_at < now() - make_interval(secs => $1::float8)
      AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.last_run_id = r.id)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
);

-- name: delete_old_workers
-- Workers gone for longer than the retention period.
-- $1 retention_s float8
DELETE FROM workers
WHERE status = 'gone' AND last_heartbeat_at < now() - make_interval(secs => $1::float8);

-- name: insert_logs
-- Log lines of runs that belong to the sending worker, in arrival order (ids follow it); lines
-- of other runs are dropped.
-- $1 run_ids uuid[], $2 worker_ids text[], $3 ts timestamptz[], $4 streams text[], $5 lines text[]
INSERT INTO task_logs (run_id, ts, stream, line)
SELECT u.run_id, u.ts, u.stream, u.line
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[]) WITH ORDINALITY
         AS u (run_id, worker_id, ts, stream, line, ord)
JOIN task_runs r ON r.id = u.run_id AND r.worker_id = u.worker_id
ORDER BY u.ord;

-- name: run_status_counts
-- Runs by status: how many, and of how many distinct tasks (a task run twice shows runs > tasks).
SELECT status, count(*) AS runs, count(DISTINCT task_id) AS tasks FROM task_runs GROUP BY status;

-- name: dispatch_delay_percentiles
-- Due -> claimed delay (started_at - scheduled_for) of first attempts started since $1, in seconds.
-- $1 since timestamptz
SELECT count(*) AS runs,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - scheduled_for)) AS p99,
       max(extract(epoch FROM started_at - scheduled_for)) AS max
FROM task_runs
WHERE attempt = 1 AND started_at >= $1;

-- name: claimed_runs_of_workers
-- Running runs this coordinator claimed for the given workers, started before $3 seconds ago:
-- the caller compares them with what it pushed down those workers' streams.
-- $1 coordinator_id text, $2 worker_ids text[], $3 older_than_s float8
SELECT id, attempt, worker_id FROM task_runs
WHERE status = 'running' AND worker_id = ANY ($2::text[]) AND coordinator_id = $1
  AND started_at < now() - make_interval(secs => $3::float8);

-- name: misrouted_runs
-- Runs this coordinator claimed for a worker after that worker registered on another coordinator:
-- they went down a stream the worker had already left, so the worker never got them.
-- (Runs claimed before the move were reconciled by the registration itself.)
-- $1 coordinator_id text, $2 limit int
SELECT r.id, r.attempt, r.worker_id
FROM task_runs r
JOIN workers w ON w.id = r.worker_id
WHERE r.status = 'running'
  AND r.coordinator_id = $1
  AND w.coordinator_id <> $1
  AND r.started_at > w.registered_at
LIMIT $2;

-- name: next_lease_expiry_s
-- Seconds until the earliest live worker lease runs out (negative: already out); NULL with no workers.
SELECT extract(epoch FROM min(lease_expires_at) - now())::float8
FROM workers
WHERE status <> 'gone';
