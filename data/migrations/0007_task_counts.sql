-- Exact task counts by status and type that cost nothing to read, kept by the statements that
-- change them.
--
-- A count(*) of a status reads every index entry of it (2,000,000 succeeded tasks: a whole index),
-- and the planner's estimate stays put until the next ANALYZE. Instead every statement that
-- inserts, deletes or changes the status of tasks appends its net change per (status, type) to
-- task_count_deltas from its statement-level trigger: one small insert per statement, whatever the
-- batch size, and no row that two transactions update (an insert-only log takes no row lock, so
-- claims, endings and submits never wait on each other here). fold_task_counts() moves the log into
-- task_counts (one row per status and type); a reader sums both in one snapshot, so a figure is
-- exact as of that snapshot whether or not a fold ran.

CREATE TABLE task_counts (
    status text NOT NULL,
    type   text NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (status, type)
);

CREATE TABLE task_count_deltas (
    status text NOT NULL,
    type   text NOT NULL,
    n      bigint NOT NULL
);

-- The log is emptied every second or so: vacuum it often, so that readers scan few dead rows.
ALTER TABLE task_count_deltas SET (autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0,
                                   autovacuum_vacuum_cost_delay = 0);

-- Inserted rows count +1, deleted rows -1 (both triggers name their transition table changed_tasks).
CREATE FUNCTION count_inserted_or_deleted_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_count_deltas (status, type, n)
    SELECT status, type, CASE WHEN TG_OP = 'DELETE' THEN -count(*) ELSE count(*) END
    FROM changed_tasks GROUP BY status, type;
    RETURN NULL;
END
$$;

CREATE FUNCTION count_updated_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Old rows count -1, new rows +1: what did not change cancels out, no join needed.
    INSERT INTO task_count_deltas (status, type, n)
    SELECT status, type, sum(n)
    FROM (SELECT status, type, -1 AS n FROM old_tasks
          UNION ALL
          SELECT status, type, 1 AS n FROM new_tasks) c
    GROUP BY status, type
    HAVING sum(n) <> 0;
    RETURN NULL;
END
$$;

CREATE FUNCTION clear_task_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_counts;
    DELETE FROM task_count_deltas;
    RETURN NULL;
END
$$;

-- Transition tables need one trigger per event, and no column list (every UPDATE fires; one that
-- changes neither status nor type logs nothing).
CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS changed_tasks FOR EACH STATEMENT EXECUTE FUNCTION count_inserted_or_deleted_tasks();
CREATE TRIGGER tasks_count_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION count_updated_tasks();
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS changed_tasks FOR EACH STATEMENT EXECUTE FUNCTION count_inserted_or_deleted_tasks();
CREATE TRIGGER tasks_count_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION clear_task_counts();

-- Moves the log into task_counts; returns the log rows folded (0 when another fold holds the lock).
-- One fold at a time (advisory lock), so task_counts has a single writer and never deadlocks. Log
-- rows of transactions that commit after the fold's snapshot are left for the next fold.
CREATE FUNCTION fold_task_counts() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7411000002) THEN
        RETURN 0;
    END IF;
    WITH moved AS (
        DELETE FROM task_count_deltas RETURNING status, type, n
    ), summed AS (
        SELECT status, type, sum(n) AS n, count(*) AS log_rows FROM moved GROUP BY status, type
    ), applied AS (
        INSERT INTO task_counts AS c (status, type, n)
        SELECT status, type, n FROM summed ORDER BY status, type
        ON CONFLICT (status, type) DO UPDATE SET n = c.n + excluded.n
    )
    SELECT coalesce(sum(log_rows), 0) INTO folded FROM summed;
    RETURN folded;
END
$$;

-- The counts of the tasks already there, taken while no write can slip between count and trigger.
LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO task_counts (status, type, n) SELECT status, type, count(*) FROM tasks GROUP BY status, type;
