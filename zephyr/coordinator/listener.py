"""One LISTEN connection for the coordinator's NOTIFY channels, reconnected when it drops.

Notifications sent while the connection was down are lost, so after every (re)connect each
channel's handler is called once with `None`: "something may have changed, look again".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import asyncpg

from zephyr.db.pool import connect

log = logging.getLogger(__name__)

Handler = Callable[[str | None], None]
RECONNECT_MAX_S = 2.0
CHECK_S = 5.0


class Listener:
    """Calls `handlers[channel](payload)` for each notification; `None` after a reconnect."""

    def __init__(self, dsn: str, handlers: Mapping[str, Handler]) -> None:
        self._dsn = dsn
        self._handlers = dict(handlers)
        self.connected = asyncio.Event()

    def _on_notify(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            handler(payload)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.1
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                conn = await connect(self._dsn)
            except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            try:
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self._handlers:
                    await conn.add_listener(channel, self._on_notify)
                delay = 0.1
                self.connected.set()
                for handler in self._handlers.values():
                    handler(None)
                stop_wait = asyncio.create_task(stop.wait())
                lost_wait = asyncio.create_task(lost.wait())
                try:
                    # The termination callback is the fast path; the periodic check catches a
                    # connection that died without one.
                    while not (stop.is_set() or lost.is_set() or conn.is_closed()):
                        await asyncio.wait(
                            {stop_wait, lost_wait}, timeout=CHECK_S, return_when=asyncio.FIRST_COMPLETED
                        )
                finally:
                    stop_wait.cancel()
                    lost_wait.cancel()
                if not stop.is_set():
                    log.warning("LISTEN connection lost; reconnecting")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("LISTEN connection failed (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                # Nothing to flush on a LISTEN connection; a graceful close can stall on a dead peer.
                conn.terminate()
