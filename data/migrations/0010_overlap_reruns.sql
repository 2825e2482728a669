-- Lost firings of overlap recurring tasks waiting for their turn to run again.
--
-- A task holds one rerun at a time: pending, due at the lost firing's time, pointing at the lost
-- run (the claim reads the firing from it). A firing lost while its task already holds one (two
-- lost in one rescue batch, or one lost while another waits) waits here; the reschedule right
-- after the task's next claim (reschedule_overlapping) takes the earliest in place of the next
-- firing. An entry goes with its run (retention).
CREATE TABLE overlap_reruns (
    run_id        uuid PRIMARY KEY REFERENCES task_runs (id) ON DELETE CASCADE,
    task_id       uuid NOT NULL,
    scheduled_for timestamptz NOT NULL,
    attempts      int NOT NULL
);
CREATE INDEX overlap_reruns_task_idx ON overlap_reruns (task_id, scheduled_for);
