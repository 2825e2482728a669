"""The scheduler's aiohttp app on a real loopback port, against a test database.

async with running_api(database_url) as api:
    async with api.session.post(api.url("/v1/tasks"), json=...) as resp: ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer

from zephyr import config as cfg
from zephyr.db.pool import create_pool
from zephyr.scheduler.app import SERVER_SETTINGS, build_app


@dataclass
class Api:
    base: str
    session: aiohttp.ClientSession
    pool: asyncpg.Pool
    config: cfg.SchedulerConfig
    app: web.Application

    def url(self, path: str) -> str:
        return self.base + path

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """(status, JSON body) of one request."""
        async with self.session.request(method, self.url(path), **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


@asynccontextmanager
async def running_api(database_url: str, **env: str) -> AsyncIterator[Api]:
    config = cfg.load(cfg.SchedulerConfig, environ={"ZEPHYR_DATABASE_URL": database_url, **env})
    pool = await create_pool(database_url, min_size=1, max_size=10, server_settings=SERVER_SETTINGS)
    app = build_app(config, pool)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(str(server.make_url("")).rstrip("/"), session, pool, config, app)
    finally:
        await server.close()
        await pool.close()
