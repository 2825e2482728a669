"""The foundation path with real processes: HTTP -> tasks row -> coordinator -> worker -> HTTP call
-> completion -> task_runs row, both with separately started services and through `zephyr up`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.support.cluster import Cluster, free_port, free_ports, wait_until
from tests.support.up_process import submit_and_wait

pytestmark = pytest.mark.slow


@pytest.fixture
async def target() -> AsyncIterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback that records the paths it was called on."""
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


async def test_http_task_runs_through_separate_services(
    database_url: str, tmp_path: Path, target: tuple[str, list[str]]
) -> None:
    url, hits = target
    async with Cluster(database_url, tmp_path) as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        await cluster.start_worker()
        task = await submit_and_wait(
            cluster.api_url, {"type": "http", "payload": {"method": "GET", "url": f"{url}/hello"}}
        )
        assert task["status"] == "succeeded", task
        assert hits == ["/hello"]
        run = task["last_run"]
        assert run["status"] == "succeeded" and run["attempt"] == 1
        assert run["result"]["status"] == 200


def start_up(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "zephyr.cli.main", "up", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_zephyr_up_runs_a_task_and_stops_cleanly(tmp_path: Path, target: tuple[str, list[str]]) -> None:
    url, hits = target
    http_port, grpc_port = free_ports(2)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("ZEPHYR_DATABASE_URL", "ZEPHYR_PUBLISH_DATABASE_URL")
    }
    env.update(
        ZEPHYR_HTTP_ADDR=f"127.0.0.1:{http_port}",
        ZEPHYR_GRPC_ADDR=f"127.0.0.1:{grpc_port}",
        ZEPHYR_COORDINATORS=f"127.0.0.1:{grpc_port}",
        PYTHONUNBUFFERED="1",
    )
    data_dir = Path(f"/tmp/zephyr-up-test-{os.getpid()}")  # the embedded server refuses dirs under /root
    log_path = tmp_path / "up.log"
    up = start_up(["--workers", "1", "--data-dir", str(data_dir)], env, log_path)
    api = f"http://127.0.0.1:{http_port}"
    try:

        async def worker_listed() -> bool:
            assert up.poll() is None, log_path.read_text()
            try:
                async with aiohttp.ClientSession() as session, session.get(f"{api}/v1/workers") as resp:
                    return resp.status == 200 and bool((await resp.json())["workers"])
            except aiohttp.ClientError:
                return False

        await wait_until(worker_listed, timeout=60, what="zephyr up to serve with a worker")
        task = await submit_and_wait(api, {"type": "http", "payload": {"method": "GET", "url": f"{url}/up"}})
        assert task["status"] == "succeeded", task
        assert hits == ["/up"]
    finally:
        up.send_signal(signal.SIGINT)
        status = await asyncio.to_thread(up.wait, 60)
        output = log_path.read_text()
        shutil.rmtree(data_dir, ignore_errors=True)
    assert status == 0, output
    assert "embedded PostgreSQL stopped" in output
    assert "Traceback" not in output, output


async def test_many_shell_runs_all_succeed_first_time(database_url: str, tmp_path: Path) -> None:
    """Forking commands beside gRPC's threads once killed ~1 child in 30 with SIGSEGV before exec
    (gRPC's fork handlers); every one of these runs must succeed on its first attempt."""
    count = 90
    async with Cluster(database_url, tmp_path) as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        await cluster.start_worker(ZEPHYR_SHELL_ALLOW="*", ZEPHYR_WORKER_CONCURRENCY="8")
        command = "echo out; echo err >&2; exit 0"
        async with aiohttp.ClientSession() as session:
            body = {"tasks": [{"type": "shell", "payload": {"command": command}} for _ in range(count)]}
            async with session.post(f"{cluster.api_url}/v1/tasks/batch", json=body) as resp:
                assert resp.status == 201, await resp.text()
        conn = await asyncpg.connect(database_url)
        try:

            async def all_finished() -> bool:
                left: int = await conn.fetchval(
                    "SELECT count(*) FROM tasks WHERE status IN ('pending', 'running')"
                )
                return left == 0

            await wait_until(all_finished, timeout=60, what=f"{count} shell tasks to finish")
            runs = await conn.fetch("SELECT attempt, status, error FROM task_runs")
        finally:
            await conn.close()
    failed = [dict(run) for run in runs if run["status"] != "succeeded"]
    assert failed == [] and len(runs) == count
