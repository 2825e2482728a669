-- name: autoscale_load
-- What `zephyr up --autoscale` scales on, from committed rows only: due tasks waiting to be
-- claimed (counted up to a cap), the free slots of the active workers (capacity minus their
-- running runs), and which of the workers `up` started are registered and which hold a run.
-- $1 int: most due tasks to count
-- $2 text[]: ids of the workers `up` started
SELECT
    (SELECT count(*) FROM (
        SELECT 1 FROM tasks WHERE status = 'pending' AND next_run_at <= now() LIMIT $1
    ) AS due_tasks) AS due,
    (SELECT coalesce(sum(capacity), 0) FROM workers WHERE status = 'active')
      - (SELECT count(*) FROM task_runs AS r JOIN workers AS w ON w.id = r.worker_id
         WHERE r.status = 'running' AND w.status = 'active') AS free_slots,
    ARRAY(SELECT id FROM workers WHERE id = ANY($2::text[]) AND status = 'active') AS registered,
    ARRAY(SELECT DISTINCT worker_id FROM task_runs
          WHERE status = 'running' AND worker_id = ANY($2::text[])) AS busy;
