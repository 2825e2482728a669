"""The scheduler service: the aiohttp application and `serve(config, stop)`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

import asyncpg
from aiohttp import web

from zephyr.config import SchedulerConfig, warn_plaintext
from zephyr.db.migrate import migrate
from zephyr.db.pool import connect, create_pool, redact_dsn
from zephyr.errors import StartupError
from zephyr.scheduler import dashboard, runs, system, tasks
from zephyr.scheduler.http import CONFIG, INSERT_POOL, NOTIFIER, OFFERED_TYPES, POOL, STOPPING
from zephyr.scheduler.middleware import bearer_auth, errors_and_metrics
from zephyr.scheduler.notifier import DueNotifier
from zephyr.stats import OfferedTypes
from zephyr.tls import server_ssl_context

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0
# A statement that takes longer fails its request (500) instead of holding it forever.
COMMAND_TIMEOUT_S = 30.0
# asyncpg prepares every statement, and after five executions PostgreSQL may switch a statement
# to a generic plan. The generic plan of a filtered page (`status = $3`) reads the primary key and
# filters, which for a rare status scans the whole table (measured with force_generic_plan: 95 ms
# on 300k rows instead of 0.3 ms); a custom plan sees the value and picks the status index.
# Planning these small statements costs little next to that risk.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


def build_app(
    config: SchedulerConfig, pool: asyncpg.Pool, insert_pool: asyncpg.Pool | None = None
) -> web.Application:
    """The API on `pool` (single inserts on `insert_pool`, by default `pool` too); the caller owns
    the pools. Bodies above `max_body_bytes` get 413."""
    app = web.Application(
        middlewares=[errors_and_metrics, bearer_auth], client_max_size=config.max_body_bytes
    )
    app[CONFIG] = config
    app[POOL] = pool
    app[INSERT_POOL] = insert_pool or pool
    app[NOTIFIER] = DueNotifier(app[INSERT_POOL])
    app[OFFERED_TYPES] = OfferedTypes()
    app[STOPPING] = asyncio.Event()

    async def on_shutdown(app: web.Application) -> None:
        app[STOPPING].set()

    async def on_cleanup(app: web.Application) -> None:
        await app[NOTIFIER].close()

    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    app.add_routes(system.routes)
    app.add_routes(tasks.routes)
    app.add_routes(runs.routes)
    app.add_routes(dashboard.routes)
    return app


async def _migrate(dsn: str) -> None:
    """Apply pending migrations on a connection of its own (no statement timeout: an index build
    may take long), retrying while the database is not up yet."""
    probe = await create_pool(dsn, min_size=1, max_size=1)  # waits for the database, says why not
    await probe.close()
    try:
        conn = await connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartupError(f"cannot migrate database {redact_dsn(dsn)}: {exc}") from exc


async def serve(config: SchedulerConfig, stop: asyncio.Event) -> None:
    """Migrate, listen on ZEPHYR_HTTP_ADDR, serve until `stop` is set, then close gracefully."""
    dsn = config.require_database()
    await _migrate(dsn)
    async with contextlib.AsyncExitStack() as pools:
        pool = await create_pool(
            dsn,
            min_size=1,
            max_size=config.db_pool_size,
            command_timeout=COMMAND_TIMEOUT_S,
            server_settings=SERVER_SETTINGS,
        )
        pools.push_async_callback(pool.close)
        insert_pool = await create_pool(
            dsn, min_size=1, max_size=max(1, config.db_pool_size // 2), command_timeout=COMMAND_TIMEOUT_S
        )
        pools.push_async_callback(insert_pool.close)
        runner = web.AppRunner(
            build_app(config, pool, insert_pool), access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S
        )
        await runner.setup()
        try:
            ssl_context = (
                server_ssl_context(config.tls_cert, config.tls_key)
                if config.tls_cert and config.tls_key
                else None
            )
            site = web.TCPSite(
                runner,
                config.http_addr.host,
                config.http_addr.port,
                reuse_address=True,
                ssl_context=ssl_context,
            )
            try:
                await site.start()
            except OSError as exc:
                raise StartupError(f"ZEPHYR_HTTP_ADDR: cannot listen on {config.http_addr}: {exc}") from exc
            log.info("scheduler listening on %s://%s", "https" if ssl_context else "http", config.http_addr)
            warn_plaintext(log, (config.http_addr,), ssl_context is not None)
            # What starting made (modules, pydantic's validators, the pools) lives as long as the
            # process: keep it out of the collector's full passes, which the garbage of batch
            # requests triggers every few seconds and which cost ~27 ms each with it.
            gc.freeze()
            await stop.wait()
            log.info("scheduler stopping")
        finally:
            await runner.cleanup()
