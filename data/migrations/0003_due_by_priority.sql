-- Due work is found through tasks_claim_idx alone, one priority at a time (see claim_due).
--
-- tasks_due_idx (next_run_at) let the planner answer the claim by reading every due row in due order
-- and filtering on priority: with a backlog of low-priority rows due earlier, one claim of a few
-- urgent rows walked the whole backlog. Without it every due-work query takes a bounded range of
-- tasks_claim_idx per priority, and each task written costs one index entry fewer.
DROP INDEX IF EXISTS tasks_due_idx;

-- The distinct priorities of pending tasks, highest first, each with its earliest next_run_at: one
-- probe of tasks_claim_idx per priority (a loose index scan), however many rows each priority holds.
CREATE FUNCTION pending_priorities() RETURNS TABLE (priority integer, earliest timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH RECURSIVE walk AS (
        (SELECT t.priority, t.next_run_at AS earliest
         FROM tasks t
         WHERE t.status = 'pending'
         ORDER BY t.priority DESC, t.next_run_at
         LIMIT 1)
        UNION ALL
        SELECT nxt.priority, nxt.earliest
        FROM walk w
        CROSS JOIN LATERAL (
            SELECT t.priority, t.next_run_at AS earliest
            FROM tasks t
            WHERE t.status = 'pending' AND t.priority < w.priority
            ORDER BY t.priority DESC, t.next_run_at
            LIMIT 1
        ) nxt
    )
    SELECT priority, earliest FROM walk
$$;
