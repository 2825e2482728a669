-- Zephyr schema, version 1.
-- Task states: pending -> running -> succeeded | dead | cancelled; pending <-> paused.
-- A recurring task goes back to pending after each run until its schedule ends.
-- Run states: running -> succeeded | failed | timed_out | lost | cancelled.

CREATE TABLE tasks (
    id              uuid PRIMARY KEY,            -- UUIDv7: time-ordered, so keyset paging by id is by age
    name            text NOT NULL DEFAULT '',
    type            text NOT NULL,
    payload         jsonb NOT NULL,
    schedule        jsonb,                       -- NULL: run once, now
    recurring       boolean NOT NULL DEFAULT false,
    overlap         boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'succeeded', 'dead', 'cancelled', 'paused')),
    priority        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    attempts        integer NOT NULL DEFAULT 0,
    timeout_s       double precision NOT NULL DEFAULT 300 CHECK (timeout_s > 0),
    next_run_at     timestamptz,                 -- UTC instant of the next firing; NULL when none
    idempotency_key text,
    last_run_id     uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The claim reads due pending rows in due order; INCLUDE lets it rank by priority from the index.
CREATE INDEX tasks_due_idx ON tasks (next_run_at) INCLUDE (priority, type) WHERE status = 'pending';
CREATE UNIQUE INDEX tasks_idempotency_key_idx ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_status_id_idx ON tasks (status, id);
CREATE INDEX tasks_type_id_idx ON tasks (type, id);
CREATE INDEX tasks_name_id_idx ON tasks (name, id);

CREATE TABLE task_runs (
    id               uuid PRIMARY KEY,
    task_id          uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'succeeded', 'failed', 'timed_out', 'lost', 'cancelled')),
    worker_id        text NOT NULL,
    coordinator_id   text NOT NULL,
    scheduled_for    timestamptz NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    deadline_at      timestamptz NOT NULL,       -- backstop for timeout_s when the worker does not report
    finished_at      timestamptz,
    result           jsonb,
    error            jsonb,                      -- {"code": ..., "message": ...}
    cancel_requested boolean NOT NULL DEFAULT false
);

CREATE INDEX task_runs_task_idx ON task_runs (task_id, id);
CREATE INDEX task_runs_running_worker_idx ON task_runs (worker_id) WHERE status = 'running';
CREATE INDEX task_runs_running_deadline_idx ON task_runs (deadline_at) WHERE status = 'running';
CREATE INDEX task_runs_finished_idx ON task_runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE task_logs (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES task_runs (id) ON DELETE CASCADE,
    ts     timestamptz NOT NULL,
    stream text NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
    line   text NOT NULL
);

CREATE INDEX task_logs_run_idx ON task_logs (run_id, id);

CREATE TABLE workers (
    id                text PRIMARY KEY,
    host              text NOT NULL,
    pid               integer,
    version           text NOT NULL DEFAULT '',
    capacity          integer NOT NULL,
    running           integer NOT NULL DEFAULT 0,
    free_slots        integer NOT NULL DEFAULT 0,
    load              double precision NOT NULL DEFAULT 0,
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'gone')),
    task_types        text[] NOT NULL DEFAULT '{}',
    coordinator_id    text,
    registered_at     timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    lease_expires_at  timestamptz NOT NULL       -- its runs are lost once this passes
);

CREATE INDEX workers_lease_idx ON workers (lease_expires_at) WHERE status <> 'gone';
