"""Big table: the burst and the trickle again on a database already holding many rows.

`big_finished` succeeded tasks (each with its succeeded run) and `big_future` pending tasks due days
ahead are loaded with COPY, then vacuumed and analysed, as a long-lived installation would be. The
figures are compared with the same scenarios on an empty database: the issue asks for within 10%.

This machine's speed drifts by more than that from one minute to the next (the same burst measured
9,600-10,900/s within four minutes; the same trickle's p99 2.9-5.3 ms in five runs with a quiet
disk), so one empty run minutes earlier is no fair reference. The empty references run here,
interleaved with the big ones as `ORDER` (pairs in mirrored order, so a steady drift weighs on both
sides alike), and each side's figure is the mean of its four runs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.database import BenchServer
from bench.queries import BENCH_QUERIES
from bench.scale import Scale
from bench.scenarios import burst, trickle
from bench.stats import latency_summary, mean_summary
from zephyr import stats
from zephyr.db import pool
from zephyr.ids import new_id

CHUNK = 100_000
STATS_CALLS = 200
ORDER = ("empty", "big", "big", "empty", "empty", "big", "big", "empty")
NOOP_PAYLOAD = '{"function": "zephyr.noop", "args": [], "kwargs": {}}'
TASK_COLUMNS = (
    "id",
    "name",
    "type",
    "payload",
    "status",
    "attempts",
    "next_run_at",
    "last_run_id",
    "created_at",
    "updated_at",
)
RUN_COLUMNS = (
    "id",
    "task_id",
    "attempt",
    "status",
    "worker_id",
    "coordinator_id",
    "scheduled_for",
    "started_at",
    "deadline_at",
    "finished_at",
    "result",
)


def _finished(count: int, now: datetime) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Chunks of (task rows, run rows) for succeeded tasks spread over the last 30 days."""
    step = timedelta(days=30) / max(count, 1)
    for start in range(0, count, CHUNK):
        tasks, runs = [], []
        for index in range(start, min(start + CHUNK, count)):
            due = now - timedelta(days=30) + step * index
            task_id, run_id = new_id(), new_id()
            done = due + timedelta(milliseconds=3)
            tasks.append((task_id, "", "internal", NOOP_PAYLOAD, "succeeded", 1, None, run_id, due, done))
            runs.append(
                (
                    run_id,
                    task_id,
                    1,
                    "succeeded",
                    "bench-old-worker",
                    "bench-old-coordinator",
                    due,
                    due + timedelta(milliseconds=1),
                    due + timedelta(seconds=330),
                    done,
                    "null",
                )
            )
        yield tasks, runs


def _future(count: int, now: datetime) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of pending tasks due from one day to about two weeks ahead."""
    for start in range(0, count, CHUNK):
        yield [
            (
                new_id(),
                "",
                "internal",
                NOOP_PAYLOAD,
                "pending",
                0,
                now + timedelta(days=1, seconds=index),
                None,
                now,
                now,
            )
            for index in range(start, min(start + CHUNK, count))
        ]


async def load(dsn: str, finished: int, future: int) -> dict[str, Any]:
    """COPY the rows in; return how long it took and the table sizes."""
    t0 = time.perf_counter()
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        for tasks, runs in _finished(finished, now):
            await conn.copy_records_to_table("tasks", records=tasks, columns=TASK_COLUMNS)
            await conn.copy_records_to_table("task_runs", records=runs, columns=RUN_COLUMNS)
        for tasks in _future(future, now):
            await conn.copy_records_to_table("tasks", records=tasks, columns=TASK_COLUMNS)
        load_s = time.perf_counter() - t0
        await conn.execute(BENCH_QUERIES["bench_vacuum_analyze"])
        await conn.execute(BENCH_QUERIES["bench_checkpoint"])
        sizes = await conn.fetchrow(BENCH_QUERIES["bench_table_sizes"])
    finally:
        await conn.close()
    assert sizes is not None
    return {
        "load_s": load_s,
        "prepare_s": time.perf_counter() - t0,
        "tasks": sizes["tasks"],
        "task_runs": sizes["task_runs"],
    }


async def _time_stats(dsn: str, calls: int = STATS_CALLS) -> dict[str, float]:
    """Latency of `calls` uncached stats reads (what `/v1/stats` costs past its 1 s cache).

    The first call also folds whatever the task count log holds since the last fold: after a
    burst that is its whole churn, so the first call's figure is reported apart.
    """
    conn = await pool.connect(dsn)  # the product's codecs: stats reads jsonb as values
    try:
        timings = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await stats.stats(conn)
            timings.append(time.perf_counter() - t0)
    finally:
        await conn.close()
    return {"first_ms": timings[0] * 1000, **latency_summary(timings[1:])}


async def _vacuum(dsn: str) -> None:
    """What autovacuum does within a minute of a burst under migration 0005's settings.

    Without it the big table's next run would start on the previous run's dead claim-index
    entries, where the empty reference starts on a fresh database.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(BENCH_QUERIES["bench_vacuum"])
    finally:
        await conn.close()


def _mean_burst(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The burst's rates as the mean of the runs' (same worker count in each)."""
    return {
        "workers": runs[0]["workers"],
        "runs": len(runs),
        "end_to_end_per_s": sum(r["end_to_end_per_s"] for r in runs) / len(runs),
        "processing_per_s": sum(r["processing_per_s"] for r in runs) / len(runs),
    }


def _mean_trickle(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The trickle's shape (`trickle`, `spike`), each summary the mean of the runs'; stalls summed."""
    return {
        "runs": len(runs),
        "trickle": {
            part: mean_summary([r["trickle"][part] for r in runs])
            for part in ("due_to_started", "due_to_finished")
        },
        "spike": {"due_to_started": mean_summary([r["spike"]["due_to_started"] for r in runs])},
        "disk_stalls": sum(r["disk_flush"]["stalls"] for r in runs),
        "p99_ms_of_each": [r["trickle"]["due_to_started"]["p99_ms"] for r in runs],
        # The trickle's p99 follows the disk's own flush p99 (about 3x here), which changes from
        # minute to minute: a side that ran on a slower disk shows it here.
        "disk_p99_ms_of_each": [r["disk_flush"]["p99_ms"] for r in runs],
    }


async def _interleaved(
    dsn: str, run_one: Callable[[int, str, str | None], Awaitable[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """`run_one(index, side, database)` for each side of ORDER, the big one on `dsn` (vacuumed
    after each run) and the empty one on a fresh database of its own (`database` None)."""
    results: dict[str, list[dict[str, Any]]] = {"empty": [], "big": []}
    for index, side in enumerate(ORDER):
        database = dsn if side == "big" else None
        results[side].append(await run_one(index, side, database))
        if database:
            await _vacuum(dsn)
    return results


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    dsn = await server.create_zephyr_database()
    try:
        loaded = await load(dsn, scale.big_finished, scale.big_future)
        stats_quiet = await _time_stats(dsn)
        bursts = await _interleaved(
            dsn,
            lambda index, side, database: burst.run_once(
                server, scale, log_dir / f"burst-{index}-{side}", scale.big_workers, database=database
            ),
        )
        stats_after_bursts = await _time_stats(dsn)
        trickles = await _interleaved(
            dsn,
            lambda index, side, database: trickle.run(
                server, scale, log_dir / f"trickle-{index}-{side}", database=database, slow_phase=False
            ),
        )
    finally:
        await server.drop_database(dsn)
    return {
        "loaded": loaded,
        "stats": {"quiet": stats_quiet, "after_bursts": stats_after_bursts},
        "order": list(ORDER),
        "burst": _mean_burst(bursts["big"]),
        "empty_burst": _mean_burst(bursts["empty"]),
        "trickle": _mean_trickle(trickles["big"]),
        "empty_trickle": _mean_trickle(trickles["empty"]),
        "runs": {"burst": bursts, "trickle": trickles},
    }
