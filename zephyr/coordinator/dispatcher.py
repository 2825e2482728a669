"""The claim loop: claim due tasks for the free slots of connected workers, commit, then push.

Wake-ups, never a busy poll: a `zephyr_tasks` notification (claim now, or move the timer to the
time it names), a freed slot or a new worker, a timer set to the next due time, and a slow
fallback poll (`poll_s`). After a full batch it claims again at once. With no free slot it
claims nothing and queries nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from zephyr import ids, metrics, tracing
from zephyr.coordinator import claimtraces
from zephyr.coordinator.claimtraces import ClaimTraces
from zephyr.coordinator.completions import CompletionBatcher, RunEnding
from zephyr.coordinator.registry import Registry, WorkerSession, assignment_groups
from zephyr.db.pool import DB_ERRORS
from zephyr.db.queries import QUERIES
from zephyr.runoutput import MESSAGE_BUDGET_BYTES
from zephyr.schedule import next_fire, parse_instant
from zephyr.taskstore import rfc3339
from zephyr.testsignal import Signal
from zephyr.v1 import worker_pb2

log = logging.getLogger(__name__)

MAX_CLAIM = 500
# A group's claim size follows the demand it meets: it starts here after a quiet spell and doubles
# while claims come back full. Every planned slot is a run id made and an array element sent and read.
CLAIM_START = 16
# Rows another coordinator holds locked stay due for a moment: look again soon, not in a spin.
OVERDUE_RECHECK_S = 0.05
DB_RETRY_S = 0.5


class DispatcherSignals:
    """What the claim loop announces to tests (zephyr.testsignal); off until `init()`."""

    def __init__(self) -> None:
        self.claimed = Signal[int]("claimed")  # a claim statement committed: the runs it claimed
        # The loop waits for a reason to claim: seconds until it looks again by itself (timer or poll).
        self.parked = Signal[float]("parked")
        # That wait ended: "wake", "changed" (registry), "retime", "stop" or "time" (timer or poll).
        self.woke = Signal[str]("woke")

    def init(self) -> None:
        self.claimed.init()
        self.parked.init()
        self.woke.init()


class Dispatcher:
    """Owns the claim; one per coordinator process."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Registry,
        batcher: CompletionBatcher,
        *,
        coordinator_id: str,
        poll_s: float,
        grace_s: float,
        signals: DispatcherSignals | None = None,
    ) -> None:
        self._pool = pool
        self._registry = registry
        self._batcher = batcher
        self._coordinator_id = coordinator_id
        self._poll_s = poll_s
        self._grace_s = grace_s
        self._wake = asyncio.Event()
        self._retime = asyncio.Event()
        self._timer_at: float | None = None  # monotonic time of the next known due task
        self._timer_known = False  # whether _timer_at is the earliest due time (or None: nothing due)
        self._timer_types: frozenset[str] = frozenset()  # the task types that knowledge covers
        self._backlogged: set[frozenset[str]] = set()  # task-type groups with due work beyond their slots
        self._claim_sizes: dict[frozenset[str], int] = {}  # per type group: slots its next claim plans
        self._timer_fired = False  # the next claim follows the timer: it plans every free slot
        self.signals = signals or DispatcherSignals()

    def on_tasks_notify(self, payload: str | None) -> None:
        """`zephyr_tasks`: something may be due now (claim) or later (set the timer). No payload
        (the listener reconnected, notifications may have been missed): claim, and ask the
        database for the next due time again."""
        if payload:
            try:
                due_in = (parse_instant(payload) - datetime.now(UTC)).total_seconds()
            except ValueError:
                due_in = 0.0
            if due_in > 0.001:
                at = time.monotonic() + due_in
                if self._timer_at is None or at < self._timer_at:
                    self._timer_at = at
                    self._retime.set()
                return
        else:
            self._timer_known = False
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim whenever due work may wait for a free slot, until `stop` is set.

        Due work may wait after a notification or a wake, when the timer fires, after a batch that
        filled every planned slot, after the fallback poll, and when a worker joins. A freed slot
        is a reason only for a group of workers whose last claim filled all its slots, or for a
        worker offering a type the timer never asked about: elsewhere nothing was left waiting. The timer holds the earliest due time known (from `next_due` and
        from notifications); the database is asked again only when that knowledge lapses: the
        timer fired, the fallback poll ran, or the listener reconnected.
        """
        waiting = True  # due work may be waiting for a slot
        while not stop.is_set():
            self._wake.clear()
            self._registry.changed.clear()
            if waiting and self._registry.total_free() > 0:
                if await self._claim_round(stop):
                    continue
                waiting = False
            fired = await self._wait_for_reason(stop)
            waiting = self._reason_to_claim(fired) or waiting

    async def _claim_round(self, stop: asyncio.Event) -> bool:
        """Claim once and, if the timer's knowledge lapsed, ask for the next due time. Returns
        whether to claim again at once: the batch was full, or the claim failed (after a pause)."""
        try:
            _claimed, more = await self.claim_once()
            if more:
                return True  # a full batch: more may be waiting
            if not self._timer_known:
                await self._set_timer()
            return False
        except DB_ERRORS as exc:
            log.warning("claim failed (%s); retrying", exc)
            # Connections may be left broken by a database restart: start afresh.
            await self._pool.expire_connections()
        except Exception:
            log.exception("claim failed; retrying")
        await _wait_any((stop,), DB_RETRY_S)
        return True

    async def _wait_for_reason(self, stop: asyncio.Event) -> asyncio.Event | None:
        """Wait for a wake, a registry change, the timer or the fallback poll; a new timer only
        re-arms the wait. Returns the event that fired, or None when the time ran out."""
        events = {"stop": stop, "wake": self._wake, "changed": self._registry.changed, "retime": self._retime}
        fired: asyncio.Event | None = stop
        while not stop.is_set():
            self._retime.clear()
            timeout = self._poll_s
            if self._timer_at is not None:
                timeout = min(timeout, max(0.0, self._timer_at - time.monotonic()))
            self.signals.parked.emit(timeout)
            fired = await _wait_any(tuple(events.values()), timeout)
            if self.signals.woke.on:
                self.signals.woke.emit(next((name for name, e in events.items() if e is fired), "time"))
            if fired is not self._retime:
                break
        return fired

    def _reason_to_claim(self, fired: asyncio.Event | None) -> bool:
        """Whether what ended the wait means due work may be waiting for a slot."""
        if fired is None:  # the timer or the fallback poll: look again, timer included
            self._timer_at = None
            self._timer_known = False
            # Rows that came due by the clock, not by a notification: maybe a whole batch
            # scheduled for this instant. Their first claim may take every free slot.
            self._timer_fired = True
            return True
        if fired is self._wake or self._registry.take_joined() or self._backlog_has_room():
            return True
        if self._timer_known and self._room_beyond_timer():
            # A worker whose types the timer never asked about has room now: it had none when the
            # timer was set (it reconnected full, its runs claimed by another coordinator).
            self._timer_known = False
        return not self._timer_known

    def _room_beyond_timer(self) -> bool:
        """A worker with a free slot offers a type the timer's knowledge does not cover."""
        return any(s.free > 0 and not s.task_types <= self._timer_types for s in self._registry.sessions())

    async def _set_timer(self) -> None:
        # Only the types of workers with room: overdue rows of full workers would make it spin.
        types = sorted({t for s in self._registry.sessions() if s.free > 0 for t in s.task_types})
        if not types:
            self._timer_at = None
            return  # still unknown: asked again once a worker has room
        async with self._pool.acquire() as conn:
            due_in = await conn.fetchval(QUERIES["next_due"], types)
        self._timer_known = True
        self._timer_types = frozenset(types)
        # Overdue rows left after a claim are held by another coordinator's: look again soon.
        at = None if due_in is None else time.monotonic() + max(float(due_in), OVERDUE_RECHECK_S)
        # A notification during the query may have named an earlier time than the query saw.
        if self._timer_at is None or (at is not None and at < self._timer_at):
            self._timer_at = at

    async def claim_once(self) -> tuple[int, bool]:
        """Claim for every group of free workers and push. Returns the runs claimed and whether
        more may be due: some group's claim filled every slot planned for it (that group stays
        backlogged until a claim of its leaves slots unused).

        A group's claim plans at most twice the runs its previous claim found (at least
        CLAIM_START, at most MAX_CLAIM): a trickle's claims plan a few slots, not every free one,
        and a full claim doubles the next, so a backlog reaches full batches within a few claims.
        The first claim after the timer fires plans every free slot (up to MAX_CLAIM)."""
        claimed = 0
        more = False
        plans = self._registry.plans(MAX_CLAIM, self._claim_size)
        self._timer_fired = False
        for types, plan in plans:
            rows, traces = await self._claim(types, plan)
            claimed += len(rows)
            group = frozenset(types)
            self._claim_sizes[group] = min(MAX_CLAIM, max(CLAIM_START, 2 * len(rows)))
            if len(rows) == len(plan):
                more = True
                self._backlogged.add(group)
            else:
                self._backlogged.discard(group)
            self._push(rows, traces)
        return claimed, more

    def _claim_size(self, group: frozenset[str]) -> int:
        return MAX_CLAIM if self._timer_fired else self._claim_sizes.get(group, CLAIM_START)

    def _backlog_has_room(self) -> bool:
        """A group of workers whose last claim filled every slot has a free slot now."""
        return any(s.free > 0 and s.task_types in self._backlogged for s in self._registry.sessions())

    async def _claim(self, types: Sequence[str], plan: Sequence[str]) -> tuple[list[Any], ClaimTraces | None]:
        """Claim due tasks for the slots of `plan`; the runs, and their spans when exported."""
        started = time.perf_counter()
        started_ns = time.time_ns()
        run_ids = ids.new_ids(len(plan))
        async with self._pool.acquire() as conn:
            # One statement that commits alone: no BEGIN and COMMIT round trips on the hot path.
            rows: list[Any] = await conn.fetch(
                QUERIES["claim_due"],
                list(types),
                list(plan),
                run_ids,
                self._coordinator_id,
                self._grace_s,
                None,
            )
            overlapping = [r for r in rows if r["recurring"] and r["overlap"]]
            if overlapping:
                await self._reschedule_overlapping(conn, overlapping)
        self.signals.claimed.emit(len(rows))
        metrics.CLAIMS.inc()
        metrics.CLAIM_BATCH.observe(len(rows))
        metrics.CLAIM_LATENCY.observe(time.perf_counter() - started)
        if tracing.STATE.enabled and rows:
            return rows, ClaimTraces(rows, started_ns, self._coordinator_id)
        return rows, None

    @staticmethod
    async def _reschedule_overlapping(conn: Any, rows: Sequence[Any]) -> None:
        """Put claimed overlap recurring tasks back to pending at their next firing.

        The claim has committed: whatever happens here, its runs must still be pushed. A task
        left running by a failure here gets its next firing when its run ends (outcomes.decide).
        """
        try:
            await conn.execute(
                QUERIES["reschedule_overlapping"],
                [r["task_id"] for r in rows],
                [next_fire(r["schedule"], previous=r["scheduled_for"], now=r["started_at"]) for r in rows],
                [r["run_id"] for r in rows],
            )
        except Exception:
            log.exception("overlap tasks not rescheduled at claim; their runs' ends will do it")

    def _push(self, rows: Sequence[Any], traces: ClaimTraces | None = None) -> None:
        """Send the committed claims down their workers' streams, one message per worker."""
        for worker_id, worker_rows in assignment_groups(rows).items():
            session = self._registry.get(worker_id)
            messages = [
                worker_pb2.CoordinatorMessage(assignments=[assignment(r, traces) for r in chunk])
                for chunk in _by_bytes(worker_rows)
            ]
            delivered = session is not None and all(session.send(message) for message in messages)
            if traces is not None:
                traces.dispatched(worker_rows, sent=delivered)
            if session is not None and delivered:
                _note_sent(session, worker_rows, traces)
                continue
            # The stream closed between plan and push: these runs never left, so end them now
            # (as lost: retried like any other lost run) instead of waiting for the lease.
            log.info(
                "worker %s went away before %d assignments were sent",
                worker_id,
                len(worker_rows),
                extra={"worker_id": worker_id},
            )
            self._batcher.submit(
                [
                    RunEnding(
                        r["run_id"],
                        r["attempt"],
                        worker_id,
                        "lost",
                        error={"code": "undelivered", "message": "the worker left before it was sent"},
                        charged=False,
                    )
                    for r in worker_rows
                ]
            )


# Per assignment beyond its payload: ids, name, type, times, field tags (generous).
ASSIGNMENT_OVERHEAD_BYTES = 512


def _note_sent(session: WorkerSession, rows: Sequence[Any], traces: ClaimTraces | None) -> None:
    """Count and remember the runs of `rows`, sent down `session`'s stream."""
    sent: Counter[str] = Counter()
    for r in rows:
        session.outstanding[str(r["run_id"])] = r["attempt"]
        sent[r["type"]] += 1
        if r["attempt"] == 1:  # a retry's scheduled_for may be its firing's, not its due time
            # Due -> started (the claim's time), both from the database: the same
            # figure the API reports for the run, whatever this host's clock says.
            metrics.child(metrics.DISPATCH_DELAY, r["type"]).observe(
                max(0.0, (r["started_at"] - r["scheduled_for"]).total_seconds())
            )
    for task_type, count in sent.items():
        metrics.child(metrics.RUNS_DISPATCHED, task_type).inc(count)
    if log.isEnabledFor(logging.DEBUG):
        _log_dispatched(rows, traces)


def _log_dispatched(rows: Sequence[Any], traces: ClaimTraces | None) -> None:
    for r in rows:
        log.debug(
            "dispatched run %s of task %s to worker %s",
            r["run_id"],
            r["task_id"],
            r["worker_id"],
            extra={
                "task_id": str(r["task_id"]),
                "run_id": str(r["run_id"]),
                "attempt": r["attempt"],
                "worker_id": r["worker_id"],
                "trace_id": claimtraces.trace_id(r, traces),
            },
        )


def assignment(r: Any, traces: ClaimTraces | None = None) -> worker_pb2.Assignment:
    """The Assignment message of a claimed row (`traces`: its spans, when exported)."""
    return worker_pb2.Assignment(
        run_id=str(r["run_id"]),
        attempt=r["attempt"],
        task_id=str(r["task_id"]),
        task_name=r["name"],
        type=r["type"],
        payload_json=r["payload_json"],  # jsonb text as stored: no decode and re-encode
        timeout_s=r["timeout_s"],
        scheduled_for=rfc3339(r["scheduled_for"]),
        traceparent=claimtraces.assignment_traceparent(r, traces),
    )


def _by_bytes(rows: Sequence[Any]) -> list[Sequence[Any]]:
    """`rows` in consecutive chunks whose assignments fit in MESSAGE_BUDGET_BYTES each; almost
    always one chunk (payloads are capped at 256 KiB by the API)."""
    chunks: list[Sequence[Any]] = []
    start = 0
    size = 0
    for index, row in enumerate(rows):
        item = len(row["payload_json"]) + len(row["name"]) + ASSIGNMENT_OVERHEAD_BYTES
        if size + item > MESSAGE_BUDGET_BYTES and index > start:
            chunks.append(rows[start:index])
            start, size = index, 0
        size += item
    chunks.append(rows[start:])
    return chunks


async def _wait_any(events: Sequence[asyncio.Event], timeout: float) -> asyncio.Event | None:
    """Wait until one of `events` is set or `timeout` passes; returns the first set event."""
    for event in events:
        if event.is_set():
            return event
    waiters = {asyncio.create_task(e.wait()): e for e in events}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    for event in events:
        if event.is_set():
            return event
    return None
