"""`python -m bench.submit [--quick] [--database-url DSN]`: the submit rate of the HTTP API.

Starts a real scheduler subprocess on a fresh migrated database (no coordinator, so nothing
drains the table while we measure) and measures tasks created per second:
- `single_sequential`: one client, one POST /v1/tasks at a time;
- `single_concurrent`: 32 clients, one POST each at a time;
- `batch_1000`: POST /v1/tasks/batch with 1000 tasks, one at a time, and 4 at a time.
Every task is checked created (201). Writes `bench/results/submit-<time>.json` and
`bench/results/submit-latest.json`, and prints one line per mode.

The database is the one of `--database-url`/`ZEPHYR_TEST_DATABASE_URL`, else the local server on
127.0.0.1:5432, else the embedded one (the same order as the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.standalone import fresh_database, write_results
from tests.support.cluster import Cluster

TASK: dict[str, Any] = {"type": "internal", "name": "bench", "payload": {"function": "zephyr.noop"}}


async def _post(session: aiohttp.ClientSession, url: str, body: Any, expect: int = 201) -> Any:
    async with session.post(url, json=body) as resp:
        answer = await resp.json()
        if resp.status != expect:
            raise RuntimeError(f"POST {url}: {resp.status} {answer}")
        return answer


async def _timed(count: int, run: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    started = time.perf_counter()
    await run()
    elapsed = time.perf_counter() - started
    return {"tasks": count, "seconds": round(elapsed, 3), "tasks_per_s": round(count / elapsed, 1)}


async def single_sequential(api: str, count: int) -> dict[str, Any]:
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:

        async def run() -> None:
            for _ in range(count):
                started = time.perf_counter()
                await _post(session, f"{api}/v1/tasks", TASK)
                latencies.append(time.perf_counter() - started)

        result = await _timed(count, run)
    latencies.sort()
    result["latency_ms"] = {
        "p50": round(latencies[len(latencies) // 2] * 1000, 3),
        "p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
    }
    return result


async def single_concurrent(api: str, count: int, clients: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        remaining = iter(range(count))

        async def client() -> None:
            for _ in remaining:
                await _post(session, f"{api}/v1/tasks", TASK)

        async def run() -> None:
            await asyncio.gather(*(client() for _ in range(clients)))

        result = await _timed(count, run)
        result["clients"] = clients
        return result


async def batches(api: str, count: int, size: int, parallel: int) -> dict[str, Any]:
    body = {"tasks": [TASK] * size}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=parallel)) as session:
        remaining = iter(range(count))

        async def client() -> None:
            for _ in remaining:
                answer = await _post(session, f"{api}/v1/tasks/batch", body)
                assert len(answer["ids"]) == size

        async def run() -> None:
            await asyncio.gather(*(client() for _ in range(parallel)))

        result = await _timed(count * size, run)
        result.update(batch_size=size, parallel=parallel)
        return result


async def main(quick: bool, database_url: str | None) -> dict[str, Any]:
    singles, concurrent, batch_count = (300, 1000, 5) if quick else (2000, 10000, 30)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_1m": os.getloadavg()[0],
        },
    }
    async with fresh_database(database_url) as (dsn, embedded):
        results["database"] = "embedded" if embedded else "server"
        with tempfile.TemporaryDirectory() as logs:
            async with Cluster(dsn, Path(logs)) as cluster:
                await cluster.start_scheduler()
                api = cluster.api_url
                await single_sequential(api, 50)  # warm up connections and prepared statements
                results["single_sequential"] = await single_sequential(api, singles)
                results["single_concurrent"] = await single_concurrent(api, concurrent, 32)
                results["batch_1000"] = await batches(api, batch_count, 1000, 1)
                results["batch_1000_parallel_4"] = await batches(api, batch_count, 1000, 4)
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.submit", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks (a smoke run)")
    parser.add_argument("--database-url", help="PostgreSQL server DSN where databases may be created")
    args = parser.parse_args()
    results = uvloop.run(main(args.quick, args.database_url))
    write_results("submit", results)
    for mode in ("single_sequential", "single_concurrent", "batch_1000", "batch_1000_parallel_4"):
        print(f"{mode:<24} {results[mode]['tasks_per_s']:>10.1f} tasks/s  ({results[mode]['tasks']} tasks)")
    print(
        f"single POST latency ms: {results['single_sequential']['latency_ms']}; load {results['machine']['load_1m']}"
    )


if __name__ == "__main__":
    cli()
