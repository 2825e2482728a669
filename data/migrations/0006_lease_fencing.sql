-- Leases that survive a database outage, fenced to the worker's current registration.
--
-- workers.registration: a fresh id per registration; a lease renewal applies only to the
-- registration it was made for, so a late renewal of an older stream can neither revive a worker
-- rescue has marked gone nor point it back at the coordinator it has left.
ALTER TABLE workers ADD COLUMN registration uuid;

-- One row that every coordinator's rescue ticks. A gap between ticks longer than half a lease means
-- the database (or every coordinator) was away: rescue then waits a lease from `resumed_at`, so
-- that live streams renew their leases before anyone is taken for dead.
-- last_tick NULL: never ticked (a fresh installation has nothing to wait for).
CREATE TABLE rescue_clock (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_tick   timestamptz,
    resumed_at  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO rescue_clock DEFAULT VALUES;
