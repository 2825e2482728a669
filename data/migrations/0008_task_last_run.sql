-- A task's newest run, defined once for every task read of the API (data/queries/api.sql).
--
-- `last_run` is the jsonb of the task's newest run (by id: UUIDv7 ids are creation order) without the
-- columns that are the coordinators' own, or no row when the task never ran. Used as
-- `LEFT JOIN LATERAL task_last_run(t.id) lr ON true`. It is a single-SELECT SQL function, STABLE and
-- not STRICT, so the planner inlines it as the subquery it holds: each read keeps the plan it had with
-- the subquery written out (one probe of task_runs_task_idx per task read), and paging stays an index scan.
CREATE FUNCTION task_last_run(of_task uuid) RETURNS TABLE (last_run jsonb)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_jsonb(r) - 'cancel_requested' - 'coordinator_id'
    FROM task_runs r
    WHERE r.task_id = of_task
    ORDER BY r.id DESC
    LIMIT 1
$$;
