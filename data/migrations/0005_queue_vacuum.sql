-- Vacuum the queue tables after thousands of changes, not after a fifth of the table.
--
-- Every claim and every ending rewrites a task row (its status is indexed, so no update is HOT) and
-- every claim leaves a dead entry in tasks_claim_idx, in due order: just where the next claim's walk
-- begins. With PostgreSQL's defaults a table of 2,000,000 tasks is vacuumed only after 400,000 dead
-- rows; until then each claim steps over the dead entries of every burst since the last vacuum
-- (about 600 buffers a claim after 50,000 claimed tasks, 26 after a vacuum). Here a vacuum (and an
-- analyze) follows any 5,000 changes plus 2% of the table, without cost-based delays.
DO $$
DECLARE
    queue_table text;
BEGIN
    FOREACH queue_table IN ARRAY ARRAY['tasks', 'task_runs'] LOOP
        EXECUTE format(
            'ALTER TABLE %I SET (autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_scale_factor = 0.02,'
            ' autovacuum_vacuum_insert_threshold = 5000, autovacuum_vacuum_insert_scale_factor = 0.02,'
            ' autovacuum_analyze_threshold = 5000, autovacuum_analyze_scale_factor = 0.02,'
            ' autovacuum_vacuum_cost_delay = 0)',
            queue_table
        );
    END LOOP;
END
$$;
