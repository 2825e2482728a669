"""Memory through a big backlog and a database outage (issue 13): peak RSS of the coordinator and
the workers while they work through `backlog_tasks` due noop tasks, while PostgreSQL is frozen
(SIGSTOP of every server process) for `backlog_outage_s`, and after it thaws.

The backlog goes in with one `INSERT ... SELECT generate_series` before the services start, so
the coordinator meets all of it at once. RSS is read from /proc every SAMPLE_S. What must hold:
the peaks stay flat from phase to phase (the backlog costs one claim batch at a time, the outage
only what the bounds of docs/design.md "Memory bounds" allow), whatever the backlog's size.
The freeze needs the embedded server (its processes are ours); on another server the outage
phase is skipped and said so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.cluster import BenchCluster
from bench.database import BenchServer
from bench.scale import Scale
from bench.worker_rss import rss_mb
from tests.support.pgfreeze import frozen

SAMPLE_S = 0.5
LEASE_S = 5  # the outage lasts longer than two leases: rescue's wait after an outage is exercised
CONCURRENCY = 200
WORKERS = 2


class RssSampler:
    """Peak RSS in MB per phase and process, sampled in the background."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.phase = "start"
        self.peaks: dict[str, dict[str, float]] = {}

    async def run(self) -> None:
        while True:
            peaks = self.peaks.setdefault(self.phase, {})
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, RuntimeError):  # a process that just exited
                    peaks[name] = round(max(peaks.get(name, 0.0), rss_mb(pid)), 1)
            await asyncio.sleep(SAMPLE_S)


@contextlib.contextmanager
def outage(server: BenchServer) -> Iterator[str]:
    """The database frozen for the duration (embedded server), or nothing (another server's)."""
    if server.data_dir is None:
        yield "skipped: not the embedded server"
        return
    with frozen(server.data_dir):
        yield "SIGSTOP of every PostgreSQL process"


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    async with BenchCluster(server, log_dir, ZEPHYR_LEASE_S=str(LEASE_S)) as zc:
        started = time.perf_counter()
        await zc.fetchval("bench_insert_backlog", scale.backlog_tasks)
        insert_s = time.perf_counter() - started
        await zc.fetchval("bench_analyze")
        await zc.start(WORKERS, ZEPHYR_WORKER_CONCURRENCY=str(CONCURRENCY))
        assert zc.coordinator is not None
        pids = {"coordinator": zc.coordinator.process.pid}
        pids.update({f"worker{i + 1}": w.process.pid for i, w in enumerate(zc.workers)})
        sampler = RssSampler(pids)
        sampling = asyncio.create_task(sampler.run())
        done: dict[str, int] = {}
        try:
            sampler.phase = "backlog"
            await asyncio.sleep(scale.backlog_phase_s)
            done["backlog"] = await zc.fetchval("bench_count_succeeded_tasks")
            sampler.phase = "outage"
            with outage(server) as how:
                await asyncio.sleep(scale.backlog_outage_s)
            sampler.phase = "after"
            await asyncio.sleep(scale.backlog_phase_s)
            done["after"] = await zc.fetchval("bench_count_succeeded_tasks")
            zc.check_alive()
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        return {
            "backlog_tasks": scale.backlog_tasks,
            "insert_s": round(insert_s, 1),
            "workers": WORKERS,
            "worker_concurrency": CONCURRENCY,
            "phase_s": scale.backlog_phase_s,
            "outage_s": scale.backlog_outage_s,
            "outage": how,
            "succeeded_by_phase_end": done,
            "peak_rss_mb": sampler.peaks,
        }
