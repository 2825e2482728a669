"""The workers connected to this coordinator, their free slots, and the slot plan of a claim.

Free slots are counted here, not trusted from heartbeats: free = capacity - runs executing, where a
run executes from its assignment until the worker reports it finished (not until that report is
committed: the worker's slot is free once it reports; but a worker has at most `capacity` reported
runs awaiting their commit counted free, so that lagging commits hold back its claims: at most
twice its capacity of runs between assignment and ack), and zero while draining. A heartbeat's own
figure is only informative.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zephyr import metrics
from zephyr.v1 import worker_pb2


@dataclass(eq=False)
class WorkerSession:
    """One open stream of a registered worker. Messages go down through `outbox`."""

    worker_id: str
    capacity: int
    task_types: frozenset[str]
    outstanding: dict[str, int] = field(default_factory=dict)  # run id -> attempt, until acked
    # Outstanding runs the worker has reported finished, whose ending is not yet committed and acked.
    reported: set[str] = field(default_factory=set)
    draining: bool = False
    closed: bool = False
    last_heard: float = field(default_factory=time.monotonic)  # monotonic time of its last message
    renewal: asyncio.Task[None] | None = None  # the lease renewal in flight, if any
    registration: Any = None  # the id of the registration this stream made; renewals are fenced to it
    outbox: asyncio.Queue[worker_pb2.CoordinatorMessage | None] = field(default_factory=asyncio.Queue)
    # A message taken from `outbox` that could not join the previous send; it goes first next time.
    carry: list[worker_pb2.CoordinatorMessage | None] = field(default_factory=list)

    @property
    def free(self) -> int:
        if self.draining or self.closed:
            return 0
        # A finished run frees its slot before its ending commits, but at most `capacity` of them
        # at a time: while commits lag (a slow or absent database) the worker gets no more work
        # beyond that, so the endings queued here and its unacked completions stay bounded.
        return max(0, self.capacity - len(self.outstanding) + min(len(self.reported), self.capacity))

    def report_finished(self, run_id: str) -> bool:
        """The worker says `run_id` no longer executes there; True if that freed one of its slots."""
        if run_id in self.outstanding and run_id not in self.reported:
            self.reported.add(run_id)
            return True
        return False

    def settle(self, run_id: str) -> None:
        """The ending of `run_id` is committed (accepted or refused) and acked: forget the run."""
        self.outstanding.pop(run_id, None)
        self.reported.discard(run_id)

    def send(self, message: worker_pb2.CoordinatorMessage) -> bool:
        """Queue `message` for the stream; False when the stream has closed."""
        if self.closed:
            return False
        self.outbox.put_nowait(message)
        return True


def slot_plan(sessions: Sequence[WorkerSession], rotation: int = 0, limit: int | None = None) -> list[str]:
    """Worker id per slot, for a claim: each slot goes to the worker with the most free slots left.

    Ties are broken by position rotated by `rotation`, so equal workers take turns across claims.
    Never plans more slots for a worker than it has free, nor more than `limit` slots in all.
    """
    count = len(sessions)
    heap: list[tuple[int, int, int]] = []
    for index, session in enumerate(sessions):
        if session.free > 0:
            heap.append((-session.free, (index - rotation) % count, index))
    heapq.heapify(heap)
    plan: list[str] = []
    while heap and (limit is None or len(plan) < limit):
        neg_free, order, index = heapq.heappop(heap)
        plan.append(sessions[index].worker_id)
        if neg_free + 1 < 0:
            heapq.heappush(heap, (neg_free + 1, order, index))
    return plan


class Registry:
    """Sessions by worker id; the dispatcher's view of capacity."""

    def __init__(self) -> None:
        self._sessions: dict[str, WorkerSession] = {}
        self._rotation = 0
        self.changed = asyncio.Event()  # set when capacity may have grown (new worker, freed slot)
        self._joined = False  # a worker registered since take_joined() last looked

    def add(self, session: WorkerSession) -> WorkerSession | None:
        """Register `session`; returns the session it replaces (same worker id), if any."""
        previous = self._sessions.get(session.worker_id)
        self._sessions[session.worker_id] = session
        self._update_gauges()
        self._joined = True
        self.changed.set()
        return previous

    def take_joined(self) -> bool:
        """Whether a worker registered since the last call (it may offer types nobody claimed)."""
        joined, self._joined = self._joined, False
        return joined

    def remove(self, session: WorkerSession) -> None:
        session.closed = True
        if self._sessions.get(session.worker_id) is session:
            del self._sessions[session.worker_id]
        self._update_gauges()

    def get(self, worker_id: str) -> WorkerSession | None:
        return self._sessions.get(worker_id)

    def sessions(self) -> list[WorkerSession]:
        return list(self._sessions.values())

    def find_run(self, run_id: str) -> WorkerSession | None:
        for session in self._sessions.values():
            if run_id in session.outstanding:
                return session
        return None

    def freed(self) -> None:
        self._update_gauges()
        self.changed.set()

    def total_free(self) -> int:
        return sum(s.free for s in self._sessions.values())

    def plans(
        self, limit: int, group_limit: Callable[[frozenset[str]], int] | None = None
    ) -> list[tuple[list[str], list[str]]]:
        """(task types, slot plan) per group of workers offering the same types, at most `limit`
        slots in all and at most `group_limit(types)` in a group. Groups with the most free slots
        come first."""
        groups: dict[frozenset[str], list[WorkerSession]] = {}
        for session in self._sessions.values():
            if session.free > 0 and session.task_types:
                groups.setdefault(session.task_types, []).append(session)
        self._rotation += 1
        result = []
        remaining = limit
        for types, members in sorted(groups.items(), key=lambda kv: -sum(s.free for s in kv[1])):
            if remaining <= 0:
                break
            cap = remaining if group_limit is None else min(remaining, group_limit(types))
            plan = slot_plan(members, self._rotation, cap)
            remaining -= len(plan)
            result.append((sorted(types), plan))
        return result

    def _update_gauges(self) -> None:
        metrics.WORKERS_CONNECTED.set(len(self._sessions))
        metrics.FREE_SLOTS.set(self.total_free())


def assignment_groups(rows: Iterable[Any]) -> dict[str, list[Any]]:
    """Claimed rows grouped by worker id, in claim order."""
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row["worker_id"], []).append(row)
    return grouped
