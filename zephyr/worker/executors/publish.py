"""`publish` runs: a message to a PostgreSQL NOTIFY channel or a Redis channel.

The payload is `zephyr.tasktypes.publish.PublishPayload`, parsed once secrets are resolved:
`channel`, `message` (a string is sent as is, anything else as JSON), optional `backend` (when
absent: redis if this worker has ZEPHYR_REDIS_URL, else postgres). PostgreSQL uses one plain asyncpg connection of its own, reopened
when it breaks, that only calls `pg_notify`: no Zephyr table, so none of the product's pool or named
queries (a worker holds no credentials to Zephyr's database and ships without `data/`). Redis uses
redis-py's asyncio client (extra `zephyr[redis]`). The result says where it went and, for Redis,
how many subscribers received it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from zephyr.errors import StartupError
from zephyr.tasktypes.publish import NOTIFY_MESSAGE_MAX_BYTES, PublishPayload
from zephyr.worker.executors.base import RunContext, RunFailure, invalid, parse_resolved, text

CONNECT_TIMEOUT_S = 10.0
# $1 channel, $2 payload: pg_notify takes the channel as a value, so no identifier is quoted.
NOTIFY_SQL = "SELECT pg_notify($1, $2)"


class PublishExecutor:
    """Executes `publish` payloads on the configured backends."""

    type = "publish"

    def __init__(self, database_url: str | None, redis_url: str | None) -> None:
        if not database_url and not redis_url:
            raise StartupError("publish needs ZEPHYR_PUBLISH_DATABASE_URL or ZEPHYR_REDIS_URL")
        self._database_url = database_url
        self._redis_url = redis_url
        self._pg: asyncpg.Connection | None = None
        self._pg_lock = asyncio.Lock()
        self._redis: Any = None
        if redis_url:
            try:
                import redis.asyncio  # noqa: F401
            except ImportError as exc:
                raise StartupError(
                    "ZEPHYR_REDIS_URL: install the redis extra (pip install 'zephyr[redis]')"
                ) from exc

    @property
    def backends(self) -> list[str]:
        return [name for name, url in (("redis", self._redis_url), ("postgres", self._database_url)) if url]

    async def execute(self, ctx: RunContext, payload: dict[str, Any]) -> Any:
        publish = parse_resolved(PublishPayload, payload)
        channel = text(publish.channel)
        backend = publish.backend or self.backends[0]
        if backend not in self.backends:
            # Retryable: another worker may have that backend configured.
            raise RunFailure(
                f"payload.backend: {backend} is not configured on this worker", code="backend_unavailable"
            )
        message = publish.message
        body = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        if backend == "postgres":
            return await self._notify(channel, body)
        return await self._publish_redis(channel, body)

    async def _notify(self, channel: str, body: str) -> dict[str, Any]:
        if len(body.encode()) > NOTIFY_MESSAGE_MAX_BYTES:
            raise invalid("message", f"a NOTIFY payload is at most {NOTIFY_MESSAGE_MAX_BYTES} bytes")
        assert self._database_url is not None
        try:
            async with self._pg_lock:
                if self._pg is None or self._pg.is_closed():
                    self._pg = await asyncpg.connect(self._database_url, timeout=CONNECT_TIMEOUT_S)
                await self._pg.execute(NOTIFY_SQL, channel, body)
        except Exception as exc:  # any driver trouble: drop the connection, reopen next time
            if self._pg is not None and not self._pg.is_closed():
                self._pg.terminate()
            self._pg = None
            # asyncpg errors carry no DSN, so the message cannot leak the password.
            raise RunFailure(f"NOTIFY failed: {type(exc).__name__}: {exc}", code="publish_error") from None
        return {"backend": "postgres", "channel": channel}

    async def _publish_redis(self, channel: str, body: str) -> dict[str, Any]:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        if self._redis is None:
            assert self._redis_url is not None
            self._redis = aioredis.from_url(self._redis_url)
        try:
            receivers = await self._redis.publish(channel, body)
        except (RedisError, OSError) as exc:
            raise RunFailure(f"Redis PUBLISH failed: {type(exc).__name__}", code="publish_error") from None
        return {"backend": "redis", "channel": channel, "receivers": int(receivers)}

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
