from __future__ import annotations

import aiohttp

from tests.support.cluster import free_port
from zephyr.config import Addr
from zephyr.metrics_http import serve_metrics


async def test_metrics_endpoint_serves_prometheus_text() -> None:
    addr = Addr("127.0.0.1", free_port())
    runner = await serve_metrics(addr)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://{addr}/metrics") as resp:
            assert resp.status == 200
            assert "zephyr_runs_dispatched_total" in await resp.text()
    finally:
        await runner.cleanup()


async def test_metrics_endpoint_requires_the_cluster_token_when_set() -> None:
    addr = Addr("127.0.0.1", free_port())
    runner = await serve_metrics(addr, "s3cret-token")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{addr}/metrics") as resp:
                assert resp.status == 401
            headers = {"Authorization": "Bearer wrong"}
            async with session.get(f"http://{addr}/metrics", headers=headers) as resp:
                assert resp.status == 401
            headers = {"Authorization": "Bearer s3cret-token"}
            async with session.get(f"http://{addr}/metrics", headers=headers) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


async def test_healthz_is_open_even_with_a_token() -> None:
    addr = Addr("127.0.0.1", free_port())
    runner = await serve_metrics(addr, "s3cret-token")
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://{addr}/healthz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}
    finally:
        await runner.cleanup()
