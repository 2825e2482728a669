-- Read-only queries on procrastinate's tables (procrastinate 3.x schema), for the peer benchmark.

-- name: peer_procrastinate_count_succeeded
SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded';

-- name: peer_procrastinate_span
-- First start and last success over all jobs (from procrastinate's own event log).
SELECT min(at) FILTER (WHERE type = 'started') AS first_started,
       max(at) FILTER (WHERE type = 'succeeded') AS last_finished
FROM procrastinate_events;

-- name: peer_procrastinate_latencies
-- deferred -> started and deferred -> succeeded, in seconds, of the given jobs.
-- $1 job ids
SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'started')
                        - min(at) FILTER (WHERE type = 'deferred'))::float8 AS to_start,
       extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded')
                        - min(at) FILTER (WHERE type = 'deferred'))::float8 AS to_finish
FROM procrastinate_events
WHERE job_id = ANY($1::bigint[])
GROUP BY job_id;
