"""The worker's Prometheus endpoint: GET /metrics on ZEPHYR_METRICS_ADDR."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zephyr.config import Addr


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_metrics(addr: Addr) -> web.AppRunner:
    """Start serving /metrics on `addr`; the caller cleans the returned runner up."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, addr.host, addr.port).start()
    return runner
