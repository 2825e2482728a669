"""procrastinate 3.10 on the same PostgreSQL server: processing rate and due -> started latency.

Method (the same as for Zephyr and Celery): N jobs are deferred before the worker starts, so the rate
is the worker's alone: N / (last success - first start), from procrastinate's own event table. Then
jobs are deferred one at a time at a fixed rate into the running worker; latency is `deferred` ->
`started` of each job, both stamped by the database. The worker is the stock CLI worker, listening
for NOTIFY, concurrency 10, in its own process.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from bench.database import BenchServer
from bench.pacing import paced, poll_until
from bench.procs import check_alive, spawn, version_of
from bench.queries import BENCH_QUERIES
from bench.scale import Scale
from bench.stats import latency_summary, rate
from tests.support.cluster import Service

CONCURRENCY = 10
DEFER_CHUNK = 1000


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    import procrastinate

    from bench.peers import procrastinate_app

    dsn = await server.create_empty_database("bench_procrastinate")
    connector = procrastinate.PsycopgConnector(conninfo=dsn)
    worker: Service | None = None
    conn = await asyncpg.connect(dsn)
    try:
        with procrastinate_app.app.replace_connector(connector) as app:
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                deferrer = procrastinate_app.noop.configure()
                count = scale.peer_tasks_procrastinate
                for start in range(0, count, DEFER_CHUNK):
                    await deferrer.batch_defer_async(*({} for _ in range(min(DEFER_CHUNK, count - start))))

                worker = spawn(
                    "procrastinate-worker",
                    [
                        "-m",
                        "procrastinate",
                        "--app=bench.peers.procrastinate_app.app",
                        "--log-level=warning",
                        "worker",
                        f"--concurrency={CONCURRENCY}",
                        "--queues=bench",
                    ],
                    log_dir,
                    BENCH_PROCRASTINATE_DSN=dsn,
                )

                async def drained(target: int) -> bool:
                    check_alive(worker)
                    done: int = await conn.fetchval(BENCH_QUERIES["peer_procrastinate_count_succeeded"])
                    return done >= target

                await poll_until(
                    lambda: drained(count), timeout_s=scale.scenario_timeout_s, what="procrastinate burst"
                )
                span = await conn.fetchrow(BENCH_QUERIES["peer_procrastinate_span"])
                seconds = (span["last_finished"] - span["first_started"]).total_seconds()

                trickle_count = int(scale.peer_rate * scale.peer_latency_s)
                ids = await paced(scale.peer_rate, trickle_count, lambda _i: deferrer.defer_async())
                await poll_until(
                    lambda: drained(count + trickle_count),
                    timeout_s=scale.scenario_timeout_s,
                    what="procrastinate trickle",
                )
                rows = await conn.fetch(BENCH_QUERIES["peer_procrastinate_latencies"], ids)
    finally:
        await conn.close()
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        await server.drop_database(dsn)
    return {
        "system": "procrastinate",
        "version": version_of("procrastinate"),
        "concurrency": CONCURRENCY,
        "tasks": count,
        "processing_s": seconds,
        "processing_per_s": rate(count, seconds),
        "latency_rate_per_s": scale.peer_rate,
        "due_to_started": latency_summary([row["to_start"] for row in rows]),
        "due_to_finished": latency_summary([row["to_finish"] for row in rows]),
    }
