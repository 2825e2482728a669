"""The Prometheus endpoint of the coordinator and the worker: GET /metrics on ZEPHYR_METRICS_ADDR.

With a token (ZEPHYR_CLUSTER_TOKEN), a scrape must carry `Authorization: Bearer <token>`;
config validation already refuses a non-loopback address without one. GET /healthz (open, like the
scheduler's) answers 200 while the process's event loop runs: the liveness probe of containers.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zephyr.config import Addr
from zephyr.tls import server_ssl_context

TOKEN_KEY = web.AppKey("token", str)


async def _metrics(request: web.Request) -> web.Response:
    token = request.app.get(TOKEN_KEY)
    if token:
        presented = request.headers.get("Authorization", "")
        if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
            return web.Response(status=401, text="a valid bearer token is required\n")
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve_metrics(
    addr: Addr, token: str | None = None, *, tls_pair: tuple[str | None, str | None] = (None, None)
) -> web.AppRunner:
    """Start serving /metrics on `addr` (HTTPS when `tls_pair` holds a certificate and its key);
    the caller cleans the returned runner up."""
    app = web.Application()
    if token:
        app[TOKEN_KEY] = token
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    cert, key = tls_pair
    ssl_context = server_ssl_context(cert, key) if cert and key else None
    await web.TCPSite(runner, addr.host, addr.port, ssl_context=ssl_context).start()
    return runner
