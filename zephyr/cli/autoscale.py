"""`zephyr up --autoscale MIN:MAX`: between MIN and MAX local workers, following the queue.

Each tick reads the load from committed rows (`autoscale_load`): due tasks waiting, the free slots
of active workers, and which of our workers hold a running run. While due work waits and no slot
is free, workers are added (enough for the waiting tasks at the workers' concurrency, up to MAX);
when nothing is due, a worker idle for `idle_s` is drained, youngest first, down to MIN.

A scale-down never kills a running task: only a worker with no running run is chosen, it is
stopped with SIGTERM (it then takes no new run and finishes any that reached it meanwhile), and
its drain time is unbounded (`ZEPHYR_DRAIN_S` of an autoscaled worker is a week).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TICK_S = 1.0
IDLE_S = 5.0
REGISTER_TIMEOUT_S = 60.0
DUE_COUNT_CAP = 100_000
# SIGTERM drain of an autoscaled worker: long enough that no run is cut short by a scale-down.
UNBOUNDED_DRAIN_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Bounds:
    """MIN:MAX workers."""

    low: int
    high: int


def parse_bounds(text: str) -> Bounds:
    """`"MIN:MAX"` with 0 <= MIN <= MAX and MAX >= 1; ValueError says what is wrong."""
    low_text, sep, high_text = text.partition(":")
    if not sep or not low_text.strip().isdigit() or not high_text.strip().isdigit():
        raise ValueError(f"{text!r} is not MIN:MAX (two whole numbers, e.g. 1:4)")
    low, high = int(low_text), int(high_text)
    if high < 1 or low > high:
        raise ValueError(f"{text!r}: need 0 <= MIN <= MAX and MAX >= 1")
    return Bounds(low, high)


@dataclass(frozen=True)
class Load:
    """One reading of `autoscale_load`."""

    due: int
    free_slots: int
    registered: frozenset[str]
    busy: frozenset[str]


@dataclass(frozen=True)
class Decision:
    """Workers to start, and worker ids to drain."""

    start: int = 0
    drain: tuple[str, ...] = ()


@dataclass
class Policy:
    """The scaling rule, free of processes and clocks (`now` comes in)."""

    bounds: Bounds
    concurrency: int
    idle_s: float = IDLE_S
    idle_since: dict[str, float] = field(default_factory=dict)

    def decide(self, load: Load, workers: list[str], starting: int, now: float) -> Decision:
        """`workers` are ours, oldest first; `starting` of them have not registered yet."""
        count = len(workers)
        if count < self.bounds.low:
            return Decision(start=self.bounds.low - count)
        for worker in list(self.idle_since):
            if worker not in workers or worker in load.busy or load.due > 0:
                del self.idle_since[worker]
        if load.due > 0:
            if starting or load.free_slots > 0 or count >= self.bounds.high:
                return Decision()  # the dispatcher is about to use free slots, or new ones are coming
            wanted = max(1, math.ceil(load.due / self.concurrency))
            return Decision(start=min(wanted, self.bounds.high - count))
        for worker in workers:
            if worker in load.registered and worker not in load.busy:
                self.idle_since.setdefault(worker, now)
        idle = [w for w in reversed(workers) if now - self.idle_since.get(w, now) >= self.idle_s]
        surplus = count - self.bounds.low
        drain = tuple(idle[: max(0, surplus)])
        for worker in drain:
            del self.idle_since[worker]
        return Decision(drain=drain)


class WorkerExited(Exception):
    """A worker the autoscaler did not stop exited on its own."""


class Autoscaler:
    """Owns the autoscaled workers: starts them, drains them, reports one that dies.

    `spawn(index)` returns an unstarted child process object with `start()`, `terminate()`,
    `wait(timeout)`, `.process`, `.name` and `.env["ZEPHYR_WORKER_ID"]` (zephyr.cli.up.Child).
    """

    def __init__(self, spawn: Callable[[int], Any], policy: Policy, dsn: str) -> None:
        self._spawn = spawn
        self.policy = policy
        self._dsn = dsn
        self.workers: dict[str, Any] = {}  # worker id -> child, oldest first
        self._started_at: dict[str, float] = {}
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._next_index = 1

    async def run(self) -> None:
        """Scale until cancelled; raises WorkerExited when a worker dies unasked."""
        from zephyr.db.pool import connect

        conn = await connect(self._dsn)
        try:
            while True:
                self._check_exits()
                load = await self._read_load(conn)
                await self._apply(load, time.monotonic())
                await asyncio.sleep(TICK_S)
        finally:
            await conn.close()

    async def _read_load(self, conn: Any) -> Load:
        from zephyr.db.queries import QUERIES  # here: `zephyr worker` parses this CLI too, and holds no SQL

        row = await conn.fetchrow(QUERIES["autoscale_load"], DUE_COUNT_CAP, list(self.workers))
        return Load(row["due"], row["free_slots"], frozenset(row["registered"]), frozenset(row["busy"]))

    async def _apply(self, load: Load, now: float) -> None:
        live = [w for w in self.workers if w not in self._draining]
        starting = [w for w in live if w not in load.registered]
        for worker in starting:
            if now - self._started_at[worker] > REGISTER_TIMEOUT_S:
                raise WorkerExited(f"{self.workers[worker].name} did not register in {REGISTER_TIMEOUT_S:g}s")
        decision = self.policy.decide(load, live, len(starting), now)
        for _ in range(decision.start):
            await self._start_one(now)
        for worker in decision.drain:
            self._draining[worker] = asyncio.create_task(self._drain(worker))
        if decision.start or decision.drain:
            size = len(self.workers) - len(self._draining)
            change = f"+{decision.start}" if decision.start else f"-{len(decision.drain)} (draining)"
            print(
                f"zephyr up: autoscale {change}: {size} workers "
                f"(due {load.due}, free slots {load.free_slots})",
                flush=True,
            )

    async def _start_one(self, now: float) -> None:
        child = self._spawn(self._next_index)
        self._next_index += 1
        child.env["ZEPHYR_DRAIN_S"] = str(UNBOUNDED_DRAIN_S)
        worker_id = child.env["ZEPHYR_WORKER_ID"]
        await child.start()
        self.workers[worker_id] = child
        self._started_at[worker_id] = now

    async def _drain(self, worker_id: str) -> None:
        child = self.workers[worker_id]
        child.terminate()
        await child.wait(timeout=UNBOUNDED_DRAIN_S)
        del self.workers[worker_id]
        del self._draining[worker_id]

    def _check_exits(self) -> None:
        for worker_id, child in self.workers.items():
            if worker_id not in self._draining and child.process.returncode is not None:
                raise WorkerExited(f"{child.name} exited with status {child.process.returncode}")

    async def stop(self, grace_s: float) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after `grace_s`): the whole cluster is going."""
        for task in self._draining.values():
            task.cancel()
        for task in list(self._draining.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        children = list(self.workers.values())
        for child in children:
            child.terminate()
        await asyncio.gather(*(child.wait(grace_s) for child in children))
        if children:
            print(f"zephyr up: autoscale stopped {len(children)} workers", file=sys.stderr)
