"""Recovery: kill -9 a worker holding `recovery_runs` runs; time until all run on another worker.

Worker A alone takes the runs (long `zephyr.sleep`s); once the database shows all of them running on
A, worker B registers, A is killed with SIGKILL and the clock starts. It stops when every one of
those tasks has a `running` run on a worker other than A. The target is `ZEPHYR_LEASE_S` + 1 s.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.client import Api, sleep_task
from bench.cluster import BenchCluster
from bench.database import BenchServer
from bench.pacing import poll_until
from bench.scale import Scale

LEASE_S = 10  # the product default, set explicitly so the target is known
SLEEP_S = 120.0  # longer than the whole scenario: the runs are still in flight when counted
CAPACITY = 1000


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    count = scale.recovery_runs
    async with BenchCluster(server, log_dir, ZEPHYR_LEASE_S=str(LEASE_S)) as zc:
        await zc.start(1, ZEPHYR_WORKER_CONCURRENCY=str(CAPACITY))
        victim = zc.workers[0]
        async with Api(zc.api_url) as api:
            ids = await api.submit_many(
                [sleep_task(SLEEP_S, timeout_s=SLEEP_S * 2) for _ in range(count)],
                batch=scale.submit_batch,
                parallel=1,
            )

        async def all_on_victim() -> bool:
            zc.check_alive()
            rows = await zc.fetch("bench_runs_of_worker", victim.addr)
            return len(rows) >= count

        await poll_until(
            all_on_victim, timeout_s=scale.scenario_timeout_s, what=f"{count} runs on {victim.addr}"
        )
        await zc.add_worker(ZEPHYR_WORKER_CONCURRENCY=str(CAPACITY))
        killed_at = time.perf_counter()
        killed_wall = datetime.now(UTC)
        victim.signal(signal.SIGKILL)
        await asyncio.to_thread(victim.process.wait, 10)

        async def all_elsewhere() -> bool:
            moved: int = await zc.fetchval("bench_count_running_elsewhere", ids, victim.addr)
            return moved >= count

        await poll_until(all_elsewhere, timeout_s=LEASE_S * 6, what="runs re-dispatched after the kill")
        recovered_s = time.perf_counter() - killed_at
        for worker in zc.workers:
            worker.signal(signal.SIGKILL)  # their two-minute sleeps are of no further interest
        timeline = await zc.fetchrow("bench_recovery_timeline", ids, victim.addr)
        lease = await zc.fetchrow("bench_worker_lease", victim.addr)

        def after_kill(moment: datetime | None) -> float | None:
            return None if moment is None else (moment - killed_wall).total_seconds()

        return {
            "runs": count,
            "lease_s": LEASE_S,
            "recovery_s": recovered_s,
            "target_s": LEASE_S + 1,
            # Where the time went, in seconds after the kill (database clock against ours).
            "breakdown_s": {
                "last_heartbeat": after_kill(lease["last_heartbeat_at"]) if lease else None,
                "lease_expired": after_kill(lease["lease_expires_at"]) if lease else None,
                **({k: after_kill(v) for k, v in timeline.items()} if timeline else {}),
            },
        }
