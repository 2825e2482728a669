"""Concurrency: `concurrency_tasks` runs of `zephyr.sleep` in flight at once over a few workers.

All tasks are submitted due at one instant a little ahead, so they become due together and the
in-flight count can reach the total; every 100 ms the harness samples the number of running runs
(database) and the RSS of each worker and of the coordinator (psutil, children included). Done
when every task has succeeded; the peak RSS per process is the figure.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from bench.client import Api, sleep_task
from bench.cluster import BenchCluster
from bench.database import BenchServer
from bench.scale import Scale
from bench.scenarios.burst import wait_succeeded
from tests.support.cluster import Service

SAMPLE_S = 0.1
HEADROOM = 1.2  # worker capacity over an even share, so an uneven spread still fits
LEAD_S = 3.0  # how far ahead the common due instant is, to cover the submission


def rss_mb(proc: Service) -> float:
    """Resident memory of the service process and its children, in MiB (0 once it has gone)."""
    try:
        root = psutil.Process(proc.pid)
        total = root.memory_info().rss + sum(
            child.memory_info().rss for child in root.children(recursive=True)
        )
    except psutil.NoSuchProcess:
        return 0.0
    return float(total) / (1024 * 1024)


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    count, workers = scale.concurrency_tasks, scale.concurrency_workers
    capacity = math.ceil(count / workers * HEADROOM)
    async with BenchCluster(server, log_dir) as zc:
        await zc.start(workers, ZEPHYR_WORKER_CONCURRENCY=str(capacity))
        assert zc.coordinator is not None
        watched = {"coordinator": zc.coordinator, **{w.addr: w for w in zc.workers}}
        baseline = {name: rss_mb(proc) for name, proc in watched.items()}
        peak = dict(baseline)
        peak_in_flight = 0
        begin = datetime.now(UTC)
        due = (begin + timedelta(seconds=LEAD_S)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        tasks = [sleep_task(scale.sleep_s, schedule={"at": due}) for _ in range(count)]
        async with Api(zc.api_url) as api:
            await api.submit_many(tasks, batch=scale.submit_batch, parallel=scale.submit_parallel)

        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak_in_flight
            while not stop.is_set():
                running: int = await zc.fetchval("bench_count_running_runs")
                peak_in_flight = max(peak_in_flight, running)
                for name, proc in watched.items():
                    peak[name] = max(peak[name], rss_mb(proc))
                await asyncio.sleep(SAMPLE_S)

        sampler = asyncio.create_task(sample())
        try:
            await wait_succeeded(zc, begin, count, scale.scenario_timeout_s, "sleep runs")
        finally:
            stop.set()
            await sampler
        return {
            "tasks": count,
            "workers": workers,
            "worker_capacity": capacity,
            "sleep_s": scale.sleep_s,
            "peak_in_flight": peak_in_flight,
            "all_succeeded": True,
            "rss_mb_idle": baseline,
            "rss_mb_peak": peak,
            "max_worker_rss_mb": max(v for k, v in peak.items() if k != "coordinator"),
        }
