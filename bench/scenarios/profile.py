"""Profile: a burst with py-spy attached to the scheduler, the coordinator and one worker.

Run apart from the measured scenarios because sampling costs CPU on a machine this small.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.client import Api, noop_task
from bench.cluster import BenchCluster
from bench.database import BenchServer
from bench.profiling import CpuMeter, Recorder, coordinator_claim_stats
from bench.scale import Scale
from bench.scenarios.burst import wait_succeeded
from tests.support.cluster import free_port

WORKERS = 2


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    async with BenchCluster(server, log_dir) as zc:
        metrics_addr = f"127.0.0.1:{free_port()}"
        await zc.start(
            WORKERS,
            coordinator_env={"ZEPHYR_METRICS_ADDR": metrics_addr},
            ZEPHYR_WORKER_CONCURRENCY=str(scale.worker_concurrency),
        )
        assert zc.scheduler is not None and zc.coordinator is not None
        targets = {"scheduler": zc.scheduler, "coordinator": zc.coordinator, "worker": zc.workers[0]}
        services = {"scheduler": zc.scheduler.pid, "coordinator": zc.coordinator.pid}
        services.update({f"worker-{i + 1}": w.pid for i, w in enumerate(zc.workers)})
        # CPU first, without py-spy attached (sampling costs CPU too): a plain burst.
        meter = CpuMeter(services, server.postmaster_pid())
        meter.start()
        begin = datetime.now(UTC)
        async with Api(zc.api_url) as api:
            await api.submit_many(
                [noop_task() for _ in range(scale.burst_tasks)],
                batch=scale.submit_batch,
                parallel=scale.submit_parallel,
            )
        await wait_succeeded(zc, begin, scale.burst_tasks, scale.scenario_timeout_s, "measured burst")
        cpu = meter.stop()
        claims = await coordinator_claim_stats(f"http://{metrics_addr}/metrics")

        recorders = [Recorder(name, proc.pid, log_dir) for name, proc in targets.items()]
        t0 = time.perf_counter()
        try:
            begin = datetime.now(UTC)
            async with Api(zc.api_url) as api:
                await api.submit_many(
                    [noop_task() for _ in range(scale.burst_tasks)],
                    batch=scale.submit_batch,
                    parallel=scale.submit_parallel,
                )
            await wait_succeeded(zc, begin, scale.burst_tasks, scale.scenario_timeout_s, "profiled burst")
        finally:
            seconds = time.perf_counter() - t0
            for recorder in recorders:
                await asyncio.to_thread(recorder.stop)
        return {
            "tasks": scale.burst_tasks,
            "workers": WORKERS,
            "seconds": seconds,
            "cpu": cpu,
            "claims": claims,
            "raw_profiles": [str(r.output) for r in recorders],
            "processes": {r.name: r.summary(seconds) for r in recorders},
        }
