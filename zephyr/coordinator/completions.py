"""Ending runs in batches: the fenced run update and the task transitions, committed together.

`apply_endings(pool, endings)` is the one way a run ends, whoever reports it (a worker's
completion, lease rescue, the timeout backstop). `CompletionBatcher` gathers completions from all
streams of this coordinator and applies whatever accumulated while the previous batch ran, so
under load one transaction covers many completions and when idle each goes alone at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg

from zephyr import metrics
from zephyr.coordinator.outcomes import FinishedRun, TaskUpdate, decide
from zephyr.db.pool import DB_ERRORS
from zephyr.db.queries import QUERIES
from zephyr.rpc import backoff_s

log = logging.getLogger(__name__)

MAX_BATCH = 1000
RETRY_DELAY_S = 0.5


class RunEnding(NamedTuple):
    """A claim that a run ended: accepted only if the run is still `running` under `worker_id`.

    A named tuple, not a dataclass: one is built per completion on the hot path."""

    run_id: Any
    attempt: int
    worker_id: str
    status: str  # succeeded | failed | timed_out | lost | cancelled
    result: Any = None
    error: dict[str, Any] | None = None
    retryable: bool = True
    duration_s: float | None = None
    charged: bool = True  # False: the run never reached its worker; its attempt does not count

    @property
    def key(self) -> tuple[Any, int, str]:
        """What fencing matches on: the run, its attempt, its worker."""
        return (self.run_id, self.attempt, self.worker_id)


@dataclass(frozen=True)
class Backoff:
    """Retry delay policy: exponential from `base_s`, capped at `cap_s`, full jitter."""

    base_s: float
    cap_s: float

    def __call__(self, attempt: int) -> float:
        return backoff_s(attempt, base_s=self.base_s, cap_s=self.cap_s)


@dataclass(frozen=True)
class EndingBatch:
    """The distinct endings of one batch by fencing key (`RunEnding.key`), and the retry policy of
    their tasks: what every step of applying a batch needs besides the endings it handles."""

    by_key: dict[tuple[Any, int, str], RunEnding]
    backoff: Backoff


async def apply_endings(pool: asyncpg.Pool, endings: Sequence[RunEnding], backoff: Backoff) -> list[bool]:
    """Apply `endings`; return, per ending, whether fencing accepted it.

    Each run's end and its task's transition commit together. A batch of successes first goes
    through `finish_successes` (one statement, no transaction round trips): the runs of one-off
    tasks end there with their tasks. Everything else (failures, recurring tasks, stale endings)
    goes through `finish_runs` and the decided task updates in one transaction.
    Idempotent: a repeated or stale ending matches no running row and is refused.
    """
    if not endings:
        return []
    # The same ending twice in one batch (a resent completion): only the first may win.
    by_key: dict[tuple[Any, int, str], RunEnding] = {}
    for ending in endings:
        by_key.setdefault(ending.key, ending)
    batch = EndingBatch(by_key, backoff)
    rows = await _end_runs(pool, list(by_key.values()), batch)
    _count_ended(rows, by_key)
    return _verdicts(endings, {(row["run_id"], row["attempt"], row["worker_id"]) for row in rows})


async def _end_runs(pool: asyncpg.Pool, endings: list[RunEnding], batch: EndingBatch) -> list[Any]:
    """End the runs of `endings` (distinct) with their tasks; returns the runs ended."""
    rows: list[Any] = []
    async with pool.acquire() as conn:
        if all(e.status == "succeeded" for e in endings):
            rows = await conn.fetch(
                QUERIES["finish_successes"], *_columns(endings, "run_id", "attempt", "worker_id", "result")
            )
            if len(rows) < len(endings):
                ended = {(row["run_id"], row["attempt"], row["worker_id"]) for row in rows}
                endings = [e for e in endings if e.key not in ended]
            else:
                endings = []
        if endings:
            async with conn.transaction():
                rows += await _finish_and_decide(conn, endings, batch)
    return rows


def _count_ended(rows: list[Any], by_key: dict[tuple[Any, int, str], RunEnding]) -> None:
    """Count the runs ended by type and status, with their durations as the workers reported them."""
    ended_counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        ended_counts[(row["type"], row["status"])] += 1
        duration_s = by_key[(row["run_id"], row["attempt"], row["worker_id"])].duration_s
        if duration_s is not None:
            metrics.child(metrics.RUN_DURATION, row["type"]).observe(duration_s)
    for (task_type, status), count in ended_counts.items():
        metrics.child(metrics.RUNS_FINISHED, task_type, status).inc(count)
        if status == "lost":
            metrics.RUNS_LOST.inc(count)


def _verdicts(endings: Sequence[RunEnding], accepted: set[tuple[Any, int, str]]) -> list[bool]:
    """Per ending, whether it was accepted: only the first of repeated endings is; refusals are
    counted and logged."""
    result = []
    granted: set[tuple[Any, int, str]] = set()
    for ending in endings:
        ok = ending.key in accepted and ending.key not in granted
        if ok:
            granted.add(ending.key)
        result.append(ok)
        if not ok:
            metrics.COMPLETIONS_REFUSED.inc()
            log.info(
                "refused %s ending of run %s attempt %d from worker %s: not running there",
                ending.status,
                ending.run_id,
                ending.attempt,
                ending.worker_id,
                extra={
                    "run_id": str(ending.run_id),
                    "attempt": ending.attempt,
                    "worker_id": ending.worker_id,
                },
            )
    return result


async def _finish_and_decide(
    conn: asyncpg.Connection, endings: Sequence[RunEnding], batch: EndingBatch
) -> list[Any]:
    """End the runs of `endings` (fenced) and apply the task transitions `decide` gives, inside the
    caller's transaction; returns the runs ended."""
    rows: list[Any] = await conn.fetch(
        QUERIES["finish_runs"],
        *_columns(endings, "run_id", "attempt", "worker_id", "status", "result", "error"),
    )
    now = datetime.now(UTC)
    updates = []
    for row in rows:
        ending = batch.by_key[(row["run_id"], row["attempt"], row["worker_id"])]
        update = decide(_finished_run(row, ending), now=now, backoff=batch.backoff)
        if update is not None:
            updates.append(update)
            if update.status == "dead":
                metrics.child(metrics.TASKS_DEAD, row["type"]).inc()
            elif update.status == "pending" and update.attempts > 0:  # a next firing resets attempts
                metrics.child(metrics.RETRIES, row["type"]).inc()
    if any(u.repoint for u in updates):
        updates = await _queue_reruns_beyond_one(conn, updates)
    if updates:
        await conn.execute(
            QUERIES["update_tasks_after_runs"],
            *_columns(
                updates, "task_id", "run_id", "expected", "status", "next_run_at", "attempts", "repoint"
            ),
        )
    return rows


def _finished_run(row: Any, ending: RunEnding) -> FinishedRun:
    """A run `finish_runs` ended (its row) as `decide` takes it."""
    return FinishedRun(
        row["run_id"],
        row["task_id"],
        row["attempt"],
        row["status"],
        row["scheduled_for"],
        row["started_at"],
        row["task_status"],
        row["attempts"],
        row["max_attempts"],
        row["recurring"],
        row["overlap"],
        row["schedule"],
        row["last_run_id"],
        ending.retryable,
        ending.charged,
    )


async def _queue_reruns_beyond_one(conn: asyncpg.Connection, updates: list[TaskUpdate]) -> list[TaskUpdate]:
    """A task holds one lost firing's rerun at a time (`decide`: due at that firing, pointing at
    its run). Of the reruns `updates` set, keep the earliest firing of each task that holds none
    yet; the others wait in `overlap_reruns` for the task's next claim (reschedule_overlapping
    takes them one by one). Returns the updates to apply."""
    reruns = sorted(
        (u for u in updates if u.repoint), key=lambda u: u.next_run_at or datetime.min.replace(tzinfo=UTC)
    )
    held = {
        r["id"] for r in await conn.fetch(QUERIES["overlap_reruns_held"], list({u.task_id for u in reruns}))
    }
    waiting = []
    for update in reruns:
        if update.task_id in held:
            waiting.append(update)
        held.add(update.task_id)  # the first of a task is set now; the rest wait
    if waiting:
        await conn.execute(
            QUERIES["queue_overlap_reruns"],
            *_columns(waiting, "run_id", "task_id", "next_run_at", "attempts"),
        )
    queued = {id(u) for u in waiting}
    return [u for u in updates if id(u) not in queued]


def _columns(items: Sequence[Any], *fields: str) -> list[list[Any]]:
    """One list per field of `items`: the arrays a batch statement takes."""
    return [[getattr(item, name) for item in items] for name in fields]


def refused_data(exc: BaseException) -> bool:
    """Whether the database (or the driver, encoding the arguments) refused a value we sent, as
    opposed to being unavailable: retrying the same values cannot succeed."""
    # asyncpg's client-side DataError (an argument it cannot encode) is a ValueError.
    return isinstance(exc, asyncpg.DataError | ValueError)


def storable_substitute(ending: RunEnding, exc: BaseException) -> RunEnding:
    """`ending` without what the database refused: no result, a plain error naming the refusal.
    A success becomes a non-retryable failure (the same result would be refused again)."""
    succeeded = ending.status == "succeeded"
    return ending._replace(
        status="failed" if succeeded else ending.status,
        result=None,
        error={
            "code": "invalid_result",
            "message": f"the database refused the run's output: {type(exc).__name__}",
        },
        retryable=False if succeeded else ending.retryable,
    )


async def apply_endings_splitting(
    pool: asyncpg.Pool, endings: Sequence[RunEnding], backoff: Backoff
) -> list[bool]:
    """`apply_endings`, except that a batch the database refuses is split until the ending it
    refuses is alone; that one is applied without its result (`storable_substitute`), so one bad
    value fails its own run and every other ending commits. Outages still raise."""
    try:
        return await apply_endings(pool, endings, backoff)
    except Exception as exc:
        if not refused_data(exc):
            raise
        if len(endings) > 1:
            middle = len(endings) // 2
            first = await apply_endings_splitting(pool, endings[:middle], backoff)
            return first + await apply_endings_splitting(pool, endings[middle:], backoff)
        log.warning("the database refused the ending of run %s: %s", endings[0].run_id, exc)
        substitute = storable_substitute(endings[0], exc)
        try:
            return await apply_endings(pool, [substitute], backoff)
        except Exception as again:
            if not refused_data(again):
                raise
            log.error("the database refused even the plain ending of run %s: %s", endings[0].run_id, again)
            return [False]


class CompletionBatcher:
    """Applies run endings in batches; `submit` resolves to accepted/refused per ending.

    A database failure does not lose endings: the batch is retried until it applies or the
    batcher stops (the worker keeps an unacknowledged completion and resends it on reconnect).
    An ending submitted again while the same one waits (a worker reconnecting through an outage
    resends every unacked completion) shares the first one's future instead of queueing again:
    the queue holds at most one entry per run ending, however often the workers reconnect.
    """

    def __init__(self, pool: asyncpg.Pool, backoff: Backoff) -> None:
        self._pool = pool
        self._backoff = backoff
        self._queue: list[tuple[RunEnding, asyncio.Future[bool]]] = []
        # Endings queued or being applied, by (run, attempt, worker, status): their futures.
        self._waiting: dict[tuple[Any, int, str, str], asyncio.Future[bool]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="completion-batcher")

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` for every submitted ending to be applied; True if all were."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _ending, future in self._queue:
            future.cancel()
        self._queue.clear()
        self._waiting.clear()

    @property
    def waiting(self) -> int:
        """Endings submitted and not yet applied."""
        return len(self._waiting)

    def submit(self, endings: Sequence[RunEnding]) -> list[asyncio.Future[bool]]:
        loop = asyncio.get_running_loop()
        futures = []
        for ending in endings:
            key = (*ending.key, ending.status)
            future = self._waiting.get(key)
            if future is None:
                future = loop.create_future()
                self._waiting[key] = future
                self._queue.append((ending, future))
            futures.append(future)
        if futures:
            self._idle.clear()
            self._wake.set()
        return futures

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                while True:
                    try:
                        accepted = await apply_endings_splitting(
                            self._pool, [e for e, _ in batch], self._backoff
                        )
                        break
                    except DB_ERRORS as exc:
                        log.warning("applying %d run endings failed (%s); retrying", len(batch), exc)
                        await self._pool.expire_connections()
                        await asyncio.sleep(RETRY_DELAY_S)
                    except Exception:
                        log.exception("applying %d run endings failed; retrying", len(batch))
                        await asyncio.sleep(RETRY_DELAY_S)
                for (ending, future), ok in zip(batch, accepted, strict=True):
                    self._waiting.pop((*ending.key, ending.status), None)
                    if not future.done():
                        future.set_result(ok)
            self._idle.set()
