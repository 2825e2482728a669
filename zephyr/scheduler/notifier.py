"""When a single POST's NOTIFY goes inside its insert and when after it; folding the notices after.

PostgreSQL serialises the commits of notifying transactions (one lock per database, held until
the commit's WAL is flushed): concurrent inserts that each NOTIFY commit one after the other, each
waiting for its own flush, and a slow flush of the disk holds back every insert queued behind it.
Without the NOTIFY they share flushes (group commit). So:
- an insert that is the scheduler's only one in flight NOTIFYs in its own transaction: it waits
  for nobody, and the notice costs no extra round trip;
- an insert that overlaps another commits without NOTIFY, and `due()` sends the notice after,
  in the background, from a statement of its own. A NOTIFY-only transaction writes no WAL of its
  own, so PostgreSQL commits it without waiting for a flush: it never waits for the disk.

While such a NOTIFY is on its way, the due times of inserts that commit meanwhile are folded into
one (the earliest): a coordinator woken for the earliest due time claims everything due and then
asks the database when the next row is due, so nothing later is missed. A NOTIFY that fails
(database gone) is logged and dropped: coordinators also poll (ZEPHYR_POLL_S), so a task is late,
never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime

import asyncpg

from zephyr import taskstore
from zephyr.db.pool import DB_ERRORS

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0


class DueNotifier:
    """`with single_insert() as notify_in_transaction:` around each single insert; `due(at)` after
    the commit of one that did not notify itself; `await close()` sends what is pending."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._inserting = 0
        self._pending: datetime | None = None
        self._sender: asyncio.Task[None] | None = None
        self.sent = 0  # notifications sent after their inserts, for tests and the curious

    @contextlib.contextmanager
    def single_insert(self) -> Iterator[bool]:
        """Around one single insert: yields True when no other insert of this scheduler is in
        flight (the insert should NOTIFY in its own transaction), else False (call `due`)."""
        alone = self._inserting == 0
        self._inserting += 1
        try:
            yield alone
        finally:
            self._inserting -= 1

    def due(self, at: datetime) -> None:
        """Something committed is due at `at`: notify now, or with the NOTIFY after the current."""
        if self._pending is None or at < self._pending:
            self._pending = at
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_pending())

    async def _send_pending(self) -> None:
        while self._pending is not None:
            at, self._pending = self._pending, None
            try:
                async with self._pool.acquire() as conn:
                    await taskstore.notify_due(conn, at)
                self.sent += 1
            except DB_ERRORS as exc:
                log.warning("new tasks not notified (coordinators will find them by polling): %s", exc)

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Wait for the NOTIFY on its way and any folded into it (shutdown: before the pool closes),
        at most `timeout_s`: then it is cancelled (coordinators will find the rows by polling)."""
        if self._sender is None:
            return
        _done, pending = await asyncio.wait({self._sender}, timeout=timeout_s)
        for task in pending:
            task.cancel()
