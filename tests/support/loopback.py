"""A real aiohttp application served on a free 127.0.0.1 port for the length of a block.

async with serve_on_loopback(app) as base_url: ...   # "http://127.0.0.1:PORT"
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from tests.support.cluster import free_port


@asynccontextmanager
async def serve_on_loopback(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
