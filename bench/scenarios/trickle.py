"""Trickle: tasks due now, one POST each at a steady rate, plus a spike all due in one future second.

Latencies come from the database, not the client: due -> started is `started_at - scheduled_for` and
due -> finished is `finished_at - scheduled_for` of each run. The spike (`spike_tasks` tasks with the
same `schedule.at`, a whole second in the middle of the trickle) must all start within one second of
that instant while the trickle goes on. A second, slower phase at the peers' rate gives the figure
they are compared with. Beside the trickle, `FlushProbe` times the disk's own flushes: a commit
cannot be faster than the flush it waits for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.client import Api, noop_task
from bench.cluster import BenchCluster
from bench.database import BenchServer
from bench.disk import FlushProbe
from bench.pacing import paced
from bench.scale import Scale
from bench.scenarios.burst import wait_succeeded
from bench.stats import latency_summary

WORKERS = 2
SPIKE_SHADOW_S = 2.0


async def checkpoints(zc: BenchCluster) -> int:
    """Checkpoints the server has begun so far (the statistics view moved in PostgreSQL 17)."""
    try:
        return int(await zc.fetchval("bench_checkpoints"))
    except asyncpg.UndefinedTableError:
        return int(await zc.fetchval("bench_checkpoints_before_17"))


async def run(
    server: BenchServer, scale: Scale, log_dir: Path, *, database: str | None = None, slow_phase: bool = True
) -> dict[str, Any]:
    async with BenchCluster(server, log_dir, database=database) as zc:
        await zc.start(WORKERS, ZEPHYR_WORKER_CONCURRENCY=str(scale.worker_concurrency))
        # The scenarios before this one wrote hundreds of thousands of rows: their checkpoint runs
        # now, not in the middle of the latencies. Checkpoints during the measurement are counted.
        await zc.fetchval("bench_checkpoint")
        checkpoints_before = await checkpoints(zc)
        begin = datetime.now(UTC)
        spike_at = (begin + timedelta(seconds=scale.trickle_s / 2 + 1)).replace(microsecond=0)
        spike = [
            noop_task(schedule={"at": spike_at.strftime("%Y-%m-%dT%H:%M:%SZ")})
            for _ in range(scale.spike_tasks)
        ]
        trickle_count = int(scale.trickle_rate * scale.trickle_s)
        slow_count = int(scale.peer_rate * scale.peer_latency_s) if slow_phase else 0
        async with Api(zc.api_url) as api:
            spike_ids = await api.submit_many(spike, batch=scale.submit_batch, parallel=1)
            with FlushProbe(server.data_dir) as disk:
                trickle_ids = await paced(
                    scale.trickle_rate, trickle_count, lambda _i: api.submit(noop_task())
                )
            with FlushProbe(server.data_dir) as slow_disk:
                slow_ids = await paced(scale.peer_rate, slow_count, lambda _i: api.submit(noop_task()))
        total = len(spike_ids) + len(trickle_ids) + len(slow_ids)
        await wait_succeeded(zc, begin, total, scale.scenario_timeout_s, "trickle runs")
        checkpoints_during = await checkpoints(zc) - checkpoints_before

        async def latencies(
            ids: list[str], *, apart_from_spike: bool = False, apart_from_stalls: bool = False
        ) -> dict[str, Any]:
            rows = await zc.fetch("bench_run_latencies", ids)
            if apart_from_stalls:
                # Diagnostic only, never the headline: the tasks due while the probe saw the disk
                # hold a flush are left out, to show what Zephyr adds when the disk does not stall.
                rows = [r for r in rows if not disk.during_stall(r["scheduled_for"].timestamp())]
            if apart_from_spike:
                # The spike's claims hold the dispatcher for a moment: trickle tasks due then wait
                # behind them. Leaving out the spike's second (and the one after) shows the trickle
                # on its own, next to the figure with everything in.
                quiet_from = spike_at + timedelta(seconds=SPIKE_SHADOW_S)
                rows = [r for r in rows if not spike_at <= r["scheduled_for"] < quiet_from]
            return {
                "due_to_started": latency_summary([row["to_start"] for row in rows]),
                "due_to_finished": latency_summary([row["to_finish"] for row in rows]),
            }

        result: dict[str, Any] = {
            "workers": WORKERS,
            "rate_per_s": scale.trickle_rate,
            "duration_s": scale.trickle_s,
            "checkpoints_during": checkpoints_during,
            "disk_flush": disk.summary(),
            "trickle": await latencies(trickle_ids),
            "trickle_apart_from_spike": await latencies(trickle_ids, apart_from_spike=True),
            "trickle_apart_from_disk_stalls": await latencies(trickle_ids, apart_from_stalls=True),
            "spike": {"tasks": len(spike_ids), "at": spike_at.isoformat(), **await latencies(spike_ids)},
        }
        if slow_phase:
            result["at_peer_rate"] = {
                "rate_per_s": scale.peer_rate,
                **await latencies(slow_ids),
                "disk_flush": slow_disk.summary(),
            }
        return result
