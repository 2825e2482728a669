"""Burst: N `zephyr.noop` tasks through POST /v1/tasks/batch until all have succeeded.

For each worker count, a fresh cluster: the clock starts before the first batch is sent and stops at
the last run's `finished_at`, so the rate is end to end, submit included. Separately, the submit rate
alone (no worker connected), and the processing rate of one worker draining that already queued
backlog: N / (last finish - first start), the method the peers are measured with.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.client import Api, noop_task
from bench.cluster import BenchCluster
from bench.database import BenchServer
from bench.pacing import poll_until
from bench.scale import Scale
from bench.stats import rate


async def wait_succeeded(zc: BenchCluster, since: datetime, count: int, timeout_s: float, what: str) -> None:
    """Until `count` runs have succeeded since `since` (or a service died, or `timeout_s` passed)."""

    async def done() -> bool:
        zc.check_alive()
        succeeded: int = await zc.fetchval("bench_count_succeeded_since", since)
        return succeeded >= count

    await poll_until(done, timeout_s=timeout_s, interval_s=0.1, what=what)


async def run_once(
    server: BenchServer,
    scale: Scale,
    log_dir: Path,
    workers: int,
    *,
    database: str | None = None,
    concurrency: int | None = None,
) -> dict[str, Any]:
    """One end-to-end burst with `workers` workers; `database` reuses an existing (big) one."""
    slots = concurrency or scale.worker_concurrency
    async with BenchCluster(server, log_dir, database=database) as zc:
        await zc.start(workers, ZEPHYR_WORKER_CONCURRENCY=str(slots))
        tasks = [noop_task() for _ in range(scale.burst_tasks)]
        async with Api(zc.api_url) as api:
            started_at = datetime.now(UTC)
            t0 = time.perf_counter()
            await api.submit_many(tasks, batch=scale.submit_batch, parallel=scale.submit_parallel)
            submit_s = time.perf_counter() - t0
        await wait_succeeded(
            zc, started_at, scale.burst_tasks, scale.scenario_timeout_s, f"burst with {workers} workers"
        )
        span = await zc.fetchrow("bench_run_span", started_at)
        assert span is not None
        end_to_end_s = (span["last_finished"] - started_at).total_seconds()
        processing_s = (span["last_finished"] - span["first_started"]).total_seconds()
        return {
            "workers": workers,
            "worker_concurrency": slots,
            "tasks": scale.burst_tasks,
            "runs_succeeded": span["runs"],
            "submit_s": submit_s,
            "end_to_end_s": end_to_end_s,
            "end_to_end_per_s": rate(scale.burst_tasks, end_to_end_s),
            "processing_per_s": rate(scale.burst_tasks, processing_s),
        }


async def submit_then_drain(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    """Submit rate with no worker connected, then one worker drains the queued backlog."""
    async with BenchCluster(server, log_dir) as zc:
        await zc.start(0)
        tasks = [noop_task() for _ in range(scale.burst_tasks)]
        async with Api(zc.api_url) as api:
            started_at = datetime.now(UTC)
            t0 = time.perf_counter()
            await api.submit_many(tasks, batch=scale.submit_batch, parallel=scale.submit_parallel)
            submit_s = time.perf_counter() - t0
        await zc.add_worker(ZEPHYR_WORKER_CONCURRENCY=str(scale.worker_concurrency))
        await wait_succeeded(
            zc, started_at, scale.burst_tasks, scale.scenario_timeout_s, "drain with 1 worker"
        )
        span = await zc.fetchrow("bench_run_span", started_at)
        assert span is not None
        processing_s = (span["last_finished"] - span["first_started"]).total_seconds()
        return {
            "tasks": scale.burst_tasks,
            "batch": scale.submit_batch,
            "parallel_requests": scale.submit_parallel,
            "submit_s": submit_s,
            "submit_per_s": rate(scale.burst_tasks, submit_s),
            "drain_workers": 1,
            "drain_processing_per_s": rate(scale.burst_tasks, processing_s),
        }


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"worker_concurrency": scale.worker_concurrency}
    result["submit_only"] = await submit_then_drain(server, scale, log_dir / "burst-submit")
    result["by_workers"] = [
        await run_once(server, scale, log_dir / f"burst-{workers}w", workers)
        for workers in scale.burst_workers
    ]
    result["wide"] = await run_once(
        server, scale, log_dir / "burst-wide", 2, concurrency=scale.burst_wide_concurrency
    )
    return result
