"""Background upkeep, safe with any number of coordinators running it at once.

- lease rescue: workers past their lease become `gone`; their running runs end `lost` and their
  tasks retry or dead-letter like after a failure. After an outage (the database, or every
  coordinator, was away for over half a lease) rescue waits a lease first, so that the leases of
  live streams are renewed before anyone is taken for dead;
- timeout backstop: running runs past `deadline_at` (timeout_s + grace) end `timed_out`;
- cancel sweep: running runs of cancelled tasks on workers connected here get a cancel sent
  (in case the `zephyr_cancel` notification was missed);
- misrouted runs: runs claimed here for a worker that had already moved to another coordinator
  (pushed down a stream it had left) end `lost`;
- unsent runs: runs claimed here for a worker connected here but never pushed (the claim's reply
  was lost after it committed) end `lost` without charging their attempt, within a lease;
- retention: finished runs (with their logs) and long-gone workers older than the retention period
  are deleted.

Each has `run_once()` returning a count and is driven by `Maintenance.run()`. Concurrency safety
comes from SKIP LOCKED (worker expiry, retention) and from the fenced run ending (rescue,
backstop): two coordinators ending the same run both try, exactly one wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from zephyr import metrics
from zephyr import stats as cluster_stats
from zephyr.coordinator.completions import Backoff, RunEnding, apply_endings
from zephyr.coordinator.gateway import Gateway
from zephyr.db.pool import DB_ERRORS
from zephyr.db.queries import QUERIES
from zephyr.testsignal import Signal

log = logging.getLogger(__name__)

BATCH = 1000
RETENTION_EVERY_S = 60.0
STATS_SAMPLE_EVERY_S = 2.0
RESCUE_MIN_WAIT_S = 0.05  # floor between rescue checks while a lease is already out
# A gap between rescue ticks (of all coordinators) longer than this many leases is an outage:
# rescue then waits a lease for live streams to renew (expire_workers).
OUTAGE_GAP_LEASES = 0.5


def endings_of(rows: list[Any], status: str, code: str, message: str) -> list[RunEnding]:
    """One RunEnding with `status` and error {code, message} per run row (id, attempt, worker_id)."""
    return [
        RunEnding(r["id"], r["attempt"], r["worker_id"], status, error={"code": code, "message": message})
        for r in rows
    ]


class MaintenanceSignals:
    """What the maintenance loop announces to tests (zephyr.testsignal); off until `init()`."""

    def __init__(self) -> None:
        # A job of `run()` ran to its end: its name ("rescue", "timeouts"...) and its count.
        self.swept = Signal[tuple[str, int]]("swept")

    def init(self) -> None:
        self.swept.init()


class Maintenance:
    """All maintenance jobs of one coordinator."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        backoff: Backoff,
        *,
        lease_s: float,
        retention_s: float,
        coordinator_id: str = "",
        gateway: Gateway | None = None,
        signals: MaintenanceSignals | None = None,
    ) -> None:
        self._pool = pool
        self._backoff = backoff
        self._lease_s = lease_s
        self._retention_s = retention_s
        self._coordinator_id = coordinator_id
        self._gateway = gateway
        self.next_expiry_s: float | None = None
        self._unsent_seen: set[Any] = set()  # runs the previous unsent pass found
        self.signals = signals or MaintenanceSignals()
        self._gauges = cluster_stats.Gauges()

    async def rescue_once(self) -> int:
        """Expire silent workers and end their running runs as lost; returns runs ended.

        Also notes when the earliest live lease runs out, so that `run` checks again right then
        rather than on a fixed period: a dead worker's runs move on as soon as its lease ends.
        """
        async with self._pool.acquire() as conn:
            gone = await conn.fetch(
                QUERIES["expire_workers"], self._lease_s, self._lease_s * OUTAGE_GAP_LEASES
            )
            rows = await conn.fetch(QUERIES["orphaned_runs"], BATCH)
            self.next_expiry_s = await conn.fetchval(QUERIES["next_lease_expiry_s"])
        if not gone and self.next_expiry_s is not None and self.next_expiry_s < 0:
            # A lease ran out but nobody expired: rescue waits after an outage (or another
            # coordinator holds the row). Look again on the usual period, not in a spin.
            self.next_expiry_s = None
        if gone:
            metrics.LEASE_EXPIRATIONS.inc(len(gone))
            for row in gone:
                log.warning("worker %s past its lease, now gone", row["id"], extra={"worker_id": row["id"]})
        endings = endings_of(rows, "lost", "lost", "worker lease expired")
        return sum(await apply_endings(self._pool, endings, self._backoff))

    async def misrouted_once(self) -> int:
        """End as lost the runs this coordinator pushed down a stream its worker had already left
        for another coordinator; returns runs ended."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(QUERIES["misrouted_runs"], self._coordinator_id, BATCH)
        endings = endings_of(rows, "lost", "lost", "sent to a stream the worker had left")
        return sum(await apply_endings(self._pool, endings, self._backoff))

    async def unsent_once(self) -> int:
        """End as lost (their attempt not charged) the runs this coordinator claimed for workers
        connected here that were never pushed down their streams: a claim whose reply was lost
        (timeout, dropped connection) committed runs nobody sent. Looks only at runs older than
        half a lease, so a claim being pushed right now is never taken for one. Returns runs ended."""
        if self._gateway is None:
            return 0
        sessions = {s.worker_id: s for s in self._gateway.sessions()}
        if not sessions:
            return 0
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                QUERIES["claimed_runs_of_workers"], self._coordinator_id, list(sessions), self._lease_s / 2
            )
        candidates = {
            r["id"]: r
            for r in rows
            if (session := sessions.get(r["worker_id"])) is not None
            and not session.closed
            and str(r["id"]) not in session.outstanding
        }
        # Only runs seen unsent by two passes in a row: a claim that committed while the database
        # was slow (its started_at long past) has been pushed by the next pass.
        seen, self._unsent_seen = self._unsent_seen, set(candidates)
        unsent = [
            RunEnding(
                r["id"],
                r["attempt"],
                r["worker_id"],
                "lost",
                error={"code": "undelivered", "message": "claimed, but its claim's reply never came"},
                charged=False,
            )
            for run_id, r in candidates.items()
            if run_id in seen
        ]
        return sum(await apply_endings(self._pool, unsent, self._backoff))

    async def timeouts_once(self) -> int:
        """End runs past their deadline as timed out; returns runs ended."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(QUERIES["overdue_runs"], BATCH)
        endings = endings_of(rows, "timed_out", "timeout", "no completion before the deadline")
        accepted = await apply_endings(self._pool, endings, self._backoff)
        if self._gateway is not None:
            self._gateway.cancel(
                [
                    (str(e.run_id), e.attempt, e.worker_id)
                    for e, ok in zip(endings, accepted, strict=True)
                    if ok
                ]
            )
        return sum(accepted)

    async def cancels_once(self) -> int:
        """Re-send cancels for cancel-requested runs of workers connected here; returns cancels sent."""
        if self._gateway is None:
            return 0
        return await self._gateway.resend_cancels()

    async def retention_once(self) -> int:
        """Delete finished runs older than the retention period; returns runs deleted."""
        total = 0
        async with self._pool.acquire() as conn:
            while True:
                status = await conn.execute(QUERIES["delete_old_runs"], self._retention_s, BATCH)
                deleted = int(status.split()[-1])
                total += deleted
                if deleted < BATCH:
                    break
            await conn.execute(QUERIES["delete_old_workers"], self._retention_s)
        return total

    async def sample_stats_once(self) -> int:
        """Set the gauges sampled from the database (queue depth and oldest due age by type, tasks
        by status and type, workers, pending work no worker offers); returns 0."""
        async with self._pool.acquire() as conn:  # a connection: neither read nor fill the pool's cache
            self._gauges.update(await cluster_stats.stats(conn))
        return 0

    async def run(self, stop: asyncio.Event) -> None:
        """Rescue when the earliest worker lease runs out (at most lease_s/4 apart); the timeout
        backstop and cancel sweep every lease_s; sampled gauges every 2 s; retention every minute."""
        rescue_every = max(0.1, self._lease_s / 4)
        jobs: list[tuple[str, Callable[[], Awaitable[int]], float]] = [
            ("rescue", self.rescue_once, rescue_every),
            ("misrouted", self.misrouted_once, rescue_every),
            ("unsent", self.unsent_once, rescue_every),
            ("timeouts", self.timeouts_once, self._lease_s),
            ("cancels", self.cancels_once, self._lease_s),
            ("stats", self.sample_stats_once, STATS_SAMPLE_EVERY_S),
            ("retention", self.retention_once, RETENTION_EVERY_S),
        ]
        loop = asyncio.get_running_loop()
        due = {name: loop.time() for name, _job, _every in jobs}
        while not stop.is_set():
            for name, job, every in jobs:
                if loop.time() < due[name]:
                    continue
                due[name] = loop.time() + every
                if await self._run_job(name, job) and name == "rescue" and self.next_expiry_s is not None:
                    # Leases are renewed all the time, so this mostly just moves the check
                    # along; when a worker dies, it lands just after its lease ends.
                    due[name] = loop.time() + min(every, max(RESCUE_MIN_WAIT_S, self.next_expiry_s))
            wait = max(0.0, min(due.values()) - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def _run_job(self, name: str, job: Callable[[], Awaitable[int]]) -> bool:
        """Run one job, log what it did or why it failed; returns whether it ran to its end."""
        try:
            count = await job()
        except DB_ERRORS as exc:
            log.warning("maintenance %s failed: %s", name, exc)
            return False
        except Exception:
            log.exception("maintenance %s failed", name)
            return False
        if count:
            log.info("maintenance %s: %d", name, count)
        self.signals.swept.emit((name, count))
        return True
