"""The cluster's figures, cheap at any table size: `/v1/stats`, `zephyr stats`, `Admin/Stats`
and the gauges the coordinators sample for Prometheus; `activity`: rates and dispatch latency over
a recent window (`/v1/stats/activity`, the dashboard's overview).

Task counts by status and type are exact and current: the statements that change tasks log their
net change (migration 0007) and a read sums the folded counts and the log in one snapshot. The
queue depth and oldest due age by type come from at most `due_cap` due tasks, oldest first; past
that many, the queue depth is the exact pending count less the tasks not yet due (read up to the
same cap). Figures that are estimates are listed in `approximate`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg

from zephyr import metrics
from zephyr.db.queries import QUERIES
from zephyr.taskstore import TASK_STATUSES, rfc3339

DB: TypeAlias = "asyncpg.Pool | asyncpg.Connection"
STATS_MAX_AGE_S = 1.0
OFFERED_TYPES_MAX_AGE_S = 2.0
# Due tasks read per stats call: bounds its cost (a few index pages) however long the queue is.
DUE_CAP = 1_000
# Finished runs read for runs_per_s: past this many in the last minute, the rate is taken over the
# newest ones only (the time they took to finish), not over the whole minute.
RECENT_RUNS_CAP = 2_000
RATE_WINDOW_S = 60.0

_stats_cache: dict[int, tuple[object, float, dict[str, Any]]] = {}


async def stats(db: DB, *, max_age_s: float = STATS_MAX_AGE_S, due_cap: int = DUE_CAP) -> dict[str, Any]:
    """The cluster's figures:

    - `tasks`: count by status (every status present), exact; `tasks_by_type`: type -> status ->
      count (non-zero counts only);
    - `queue_depth` (due, not running) and `queue_depth_by_type`; `oldest_due_age_s` (0 when
      nothing is due, exact) and `oldest_due_age_s_by_type`;
    - `pending_by_type` (pending tasks, due or not) and `types_without_worker`: types with pending
      tasks that no active worker with a live lease offers: they wait until one does;
    - `workers` (not gone) and `workers_by_status`; `offered_types`;
    - `runs_per_s`: runs finished in the last minute / 60; past RECENT_RUNS_CAP of them, the rate
      of the newest RECENT_RUNS_CAP;
    - `approximate`: the fields that are estimates: the queue depths when both the due and the
      not-yet-due pending tasks exceed `due_cap` (then they are lower bounds), the oldest due age
      by type when the due tasks exceed it (types whose oldest due task lies past the cap are
      missing), `runs_per_s` when taken over less than the minute; `as_of`.

    Folds the task count log first (see fold_task_counts). On a Pool the answer is cached per pool
    for `max_age_s`.
    """
    key = id(db)
    now = time.monotonic()
    cached = _stats_cache.get(key)
    if isinstance(db, asyncpg.Pool) and cached and cached[0] is db and now - cached[1] < max_age_s:
        return dict(cached[2])
    await db.fetchval(QUERIES["fold_task_counts"])
    row = await db.fetchrow(QUERIES["stats"], due_cap, RECENT_RUNS_CAP)
    assert row is not None
    result = _figures(row, due_cap)
    if isinstance(db, asyncpg.Pool):
        _stats_cache[key] = (db, now, result)
    return dict(result)


def _figures(row: asyncpg.Record, due_cap: int) -> dict[str, Any]:
    tasks = dict.fromkeys(TASK_STATUSES, 0)
    by_type: dict[str, dict[str, int]] = {}
    for status, task_type, count in row["counts"]:
        tasks[status] = tasks.get(status, 0) + count
        by_type.setdefault(task_type, {})[status] = count
    pending_by_type = {t: s["pending"] for t, s in sorted(by_type.items()) if s.get("pending")}
    offered = set(row["offered_types"])
    due: dict[str, list[Any]] = row["due"]
    depth_by_type = {t: n for t, (n, _age) in due.items()}
    approximate = []
    future: dict[str, int] | None = row["future"]
    if future is not None:  # the due rows filled the cap: depth is pending less not yet due
        if sum(future.values()) < due_cap:
            depth_by_type = {t: n - future.get(t, 0) for t, n in pending_by_type.items()}
            depth_by_type = {t: n for t, n in depth_by_type.items() if n > 0}
        else:
            approximate += ["queue_depth", "queue_depth_by_type"]
        approximate.append("oldest_due_age_s_by_type")
    queue_depth = sum(depth_by_type.values())
    workers_by_status: dict[str, int] = row["workers"]
    recent_runs, oldest_recent_s = row["recent_runs"]
    if recent_runs >= RECENT_RUNS_CAP and oldest_recent_s:
        runs_per_s = recent_runs / max(oldest_recent_s, 1e-3)
        approximate.append("runs_per_s")
    else:
        runs_per_s = recent_runs / RATE_WINDOW_S
    return {
        "tasks": tasks,
        "tasks_by_type": {t: by_type[t] for t in sorted(by_type)},
        "queue_depth": queue_depth,
        "queue_depth_by_type": {t: depth_by_type[t] for t in sorted(depth_by_type)},
        "oldest_due_age_s": max(0.0, row["oldest_due_age_s"] or 0.0),
        "oldest_due_age_s_by_type": {t: round(max(0.0, due[t][1]), 3) for t in sorted(due)},
        "pending_by_type": pending_by_type,
        "types_without_worker": sorted(t for t in pending_by_type if t not in offered),
        "workers": sum(n for status, n in workers_by_status.items() if status != "gone"),
        "workers_by_status": workers_by_status,
        "offered_types": sorted(offered),
        "runs_per_s": round(runs_per_s, 3),
        "approximate": approximate,
        "as_of": rfc3339(datetime.now(UTC)),
    }


class Gauges:
    """Sets the sampled gauges of `zephyr.metrics` from one stats answer; a label set that has
    disappeared since the previous sample (a type no longer due) is set to 0, not left stale."""

    def __init__(self) -> None:
        self._seen: dict[Any, set[tuple[str, ...]]] = {}

    def update(self, figures: dict[str, Any]) -> None:
        types = set(figures["tasks_by_type"]) | set(figures["queue_depth_by_type"])
        self._set(metrics.QUEUE_DEPTH, {(t,): n for t, n in figures["queue_depth_by_type"].items()})
        self._set(
            metrics.OLDEST_DUE_AGE, {(t,): age for t, age in figures["oldest_due_age_s_by_type"].items()}
        )
        self._set(
            metrics.TASKS,
            {(s, t): n for t, counts in figures["tasks_by_type"].items() for s, n in counts.items()},
        )
        self._set(
            metrics.PENDING_WITHOUT_WORKER,
            {
                (t,): figures["pending_by_type"].get(t, 0) if t in figures["types_without_worker"] else 0
                for t in types
            },
        )
        workers: dict[tuple[str, ...], float] = {("active",): 0, ("draining",): 0, ("gone",): 0}
        workers.update({(s,): n for s, n in figures["workers_by_status"].items()})
        self._set(metrics.WORKERS, workers)

    def _set(self, gauge: Any, values: dict[tuple[str, ...], float]) -> None:
        seen = self._seen.setdefault(gauge, set())
        for labels in seen - set(values):
            gauge.labels(*labels).set(0)
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        seen |= set(values)


class OfferedTypes:
    """The task types active workers offer, read at most every `max_age_s` (the submit path asks
    for every task; the answer may be that old)."""

    def __init__(self, max_age_s: float = OFFERED_TYPES_MAX_AGE_S) -> None:
        self._max_age_s = max_age_s
        self._types: frozenset[str] = frozenset()
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()

    def expire(self) -> None:
        """Read the types anew at the next `get`."""
        self._read_at = -float("inf")

    async def get(self, db: DB) -> frozenset[str]:
        # Callers wait for a read under way rather than take the answer it replaces.
        async with self._lock:
            if time.monotonic() - self._read_at >= self._max_age_s:
                self._types = frozenset(await db.fetchval(QUERIES["offered_task_types"]))
                self._read_at = time.monotonic()
            return self._types


# Each part of `activity` reads at most this many rows; a figure at the cap is listed in
# `approximate` (rates above cap / window, e.g. 10,000/s over 10 s, read as "at least").
ACTIVITY_CAP = 100_000
ACTIVITY_MAX_AGE_S = 1.0
_activity_cache: dict[tuple[int, float], tuple[object, float, dict[str, Any]]] = {}


async def activity(
    db: DB, window_s: float, *, cap: int = ACTIVITY_CAP, max_age_s: float = ACTIVITY_MAX_AGE_S
) -> dict[str, Any]:
    """What happened in the last `window_s` seconds: `submitted_per_s` (tasks created),
    `finished_per_s` (runs ended, any status) with `finished` counts by run status,
    `dispatch_latency_s` (`runs`, `p50`, `p90`, `p99`, `max` of due -> started over first attempts
    started in the window; null percentiles without runs). `approximate` names the figures that
    hit `cap` rows (due work by type is in `stats`). On a Pool the answer is cached per pool and window for `max_age_s`."""
    key = (id(db), window_s)
    now = time.monotonic()
    cached = _activity_cache.get(key)
    if isinstance(db, asyncpg.Pool) and cached and cached[0] is db and now - cached[1] < max_age_s:
        return dict(cached[2])
    row = await db.fetchrow(QUERIES["activity"], cap, window_s)
    assert row is not None
    approximate = [
        name
        for name, read in (
            ("submitted_per_s", row["submitted"]),
            ("finished_per_s", row["finished"]),
            ("dispatch_latency_s", row["runs"]),
        )
        if read >= cap
    ]
    percentiles = row["p"] or [None, None, None]
    result = {
        "window_s": window_s,
        "submitted_per_s": round(row["submitted"] / window_s, 3),
        "finished_per_s": round(row["finished"] / window_s, 3),
        "finished": dict(row["finished_by_status"]),
        "dispatch_latency_s": {
            "runs": row["runs"],
            "p50": percentiles[0],
            "p90": percentiles[1],
            "p99": percentiles[2],
            "max": row["max"],
        },
        "approximate": approximate,
        "as_of": rfc3339(datetime.now(UTC)),
    }
    if isinstance(db, asyncpg.Pool):
        _activity_cache[key] = (db, now, result)
    return dict(result)
