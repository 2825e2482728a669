"""Connection pools: JSON codecs, start-up that says why it failed, DSNs that hide passwords."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from zephyr.errors import StartupError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
# What a database outage or restart looks like to a caller. InternalClientError: asyncpg's state
# error on a connection the server dropped mid-operation (seen on PostgreSQL restarts).
DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by `***`, for logs and error messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            encoder=lambda value: json.dumps(value, separators=(",", ":")),
            decoder=json.loads,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL).

    Pooled connections carry no session state to clear: no LISTEN (the coordinator's listener
    has its own connection), no session SET (settings travel as start-up parameters), advisory
    locks only per transaction, cursors only inside transactions. An open transaction is still
    rolled back by the pool before this runs. The reset query was one round trip more per
    acquire: a third of the statements of a trickle's claim and of each single insert.
    """


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """One connection with Zephyr's codecs; for migrations, LISTEN and tests."""
    conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S, **kwargs)
    await _init_connection(conn)
    return conn


# No JIT compilation on the services' connections: their statements touch a handful of rows, and
# compiling one costs 30-45 ms. A generic claim plan on a big table is estimated above
# jit_above_cost (106,904 against 100,000) and was compiled on every call: 42 ms instead of 0.3 ms.
NO_JIT = {"jit": "off"}


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    wait_s: float = 30.0,
    server_settings: dict[str, str] | None = None,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool with Zephyr's codecs and JIT off (`server_settings` may say otherwise). Retries for up
    to `wait_s` while the database is not up yet, then raises StartupError naming the (redacted)
    DSN and the last reason."""
    deadline = asyncio.get_running_loop().time() + wait_s
    delay = 0.2
    while True:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                reset=_keep_session,
                timeout=CONNECT_TIMEOUT_S,
                server_settings={**NO_JIT, **(server_settings or {})},
                **kwargs,
            )
            return pool
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise StartupError(f"cannot connect to database {redact_dsn(dsn)}: {exc}") from exc
            log.warning("database %s not reachable yet (%s); retrying", redact_dsn(dsn), exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
