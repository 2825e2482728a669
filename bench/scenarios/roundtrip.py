"""Round trip: POST one task, poll GET until it is `succeeded`; 100 times, one after another.

This is what a user sees with the README's two curls: the time from the POST being sent to the
task reading back as succeeded, including the HTTP call the task makes (to a local aiohttp target)
and the polling interval of the reader (5 ms here, so it adds at most that).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.cluster import BenchCluster
from bench.database import BenchServer
from bench.scale import Scale
from bench.stats import latency_summary
from tests.support.cluster import free_port

TASKS = 100
POLL_S = 0.005


async def _target() -> tuple[web.AppRunner, str]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"


async def run(server: BenchServer, scale: Scale, log_dir: Path) -> dict[str, Any]:
    runner, url = await _target()
    task = {"type": "http", "payload": {"method": "GET", "url": url}}
    seconds: list[float] = []
    try:
        async with BenchCluster(server, log_dir) as zc:
            await zc.start(2)
            async with aiohttp.ClientSession() as session:
                for _ in range(TASKS):
                    started = time.perf_counter()
                    async with session.post(f"{zc.api_url}/v1/tasks", json=task) as resp:
                        assert resp.status == 201, await resp.text()
                        task_id = (await resp.json())["id"]
                    while True:
                        async with session.get(f"{zc.api_url}/v1/tasks/{task_id}") as resp:
                            status = (await resp.json())["status"]
                        if status == "succeeded":
                            break
                        if status not in ("pending", "running"):
                            raise RuntimeError(f"task {task_id} ended {status}")
                        await asyncio.sleep(POLL_S)
                    seconds.append(time.perf_counter() - started)
    finally:
        await runner.cleanup()
    return {"tasks": TASKS, "post_to_succeeded_s": latency_summary(sorted(seconds))}
