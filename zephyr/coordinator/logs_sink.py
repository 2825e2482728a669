"""Batched inserts of run log lines: whatever arrived while the last insert ran goes in the next.

Lines are kept in memory up to MAX_BUFFERED lines and MAX_BUFFERED_CHARS characters of text (a
line is at most 16 KiB characters: the count alone allowed gigabytes); beyond either the oldest
are dropped and counted (logs must never stall dispatch or completions), also while the database
is away. The batch being written is taken out of the buffer first, so it is never dropped twice
or counted against the lines that arrive meanwhile. A line for a run that is not the sending
worker's is discarded by the insert itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from zephyr import metrics
from zephyr.coordinator.completions import refused_data
from zephyr.db.pool import DB_ERRORS
from zephyr.db.queries import QUERIES
from zephyr.runoutput import MAX_LOG_LINE_CHARS, clean_text
from zephyr.v1 import worker_pb2

log = logging.getLogger(__name__)

MAX_BATCH = 5000
MAX_BUFFERED = 200_000
MAX_BUFFERED_CHARS = 64 * 1024 * 1024
RETRY_DELAY_S = 0.5
STREAMS = {
    worker_pb2.LOG_STREAM_STDOUT: "stdout",
    worker_pb2.LOG_STREAM_STDERR: "stderr",
    worker_pb2.LOG_STREAM_SYSTEM: "system",
}


class LogSink:
    """Accepts log lines from streams; a background task inserts them in batches."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._buffer: deque[tuple[Any, str, datetime, str, str]] = deque()
        self._chars = 0  # characters of log text in `_buffer`
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="log-sink")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add(self, worker_id: str, lines: Iterable[worker_pb2.LogLine]) -> None:
        for line in lines:
            try:
                ts = datetime.fromtimestamp(line.ts_us / 1_000_000, UTC)
            except (OverflowError, OSError, ValueError):
                ts = datetime.now(UTC)
            self._buffer.append((line.run_id, worker_id, ts, STREAMS.get(line.stream, "stdout"), line.line))
            self._chars += len(line.line)
        dropped = 0
        while len(self._buffer) > MAX_BUFFERED or self._chars > MAX_BUFFERED_CHARS:
            self._chars -= len(self._buffer.popleft()[4])
            dropped += 1
        if dropped:
            metrics.LOG_LINES_DROPPED.inc(dropped)
        self._idle.clear()
        self._wake.set()

    @property
    def buffered(self) -> tuple[int, int]:
        """Lines waiting to be written, and their characters of text."""
        return len(self._buffer), self._chars

    async def flushed(self) -> None:
        """Wait until every line added so far has been written (or dropped)."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                batch = [self._buffer.popleft() for _ in range(min(len(self._buffer), MAX_BATCH))]
                self._chars -= sum(len(item[4]) for item in batch)
                while True:
                    try:
                        await self._insert_splitting(batch)
                        break
                    except DB_ERRORS as exc:
                        log.warning("writing %d log lines failed (%s); retrying", len(batch), exc)
                        await self._pool.expire_connections()
                        await asyncio.sleep(RETRY_DELAY_S)
            self._idle.set()

    async def _insert_splitting(self, batch: list[tuple[Any, str, datetime, str, str]]) -> None:
        """Insert `batch`; a batch the database refuses is split until the refused line is alone,
        and that line is dropped: one bad line never holds back the others."""
        try:
            await self._insert(batch)
        except Exception as exc:
            if not refused_data(exc):
                raise
            if len(batch) == 1:
                log.warning("the database refused a log line of run %s: %s; dropped", batch[0][0], exc)
                return
            middle = len(batch) // 2
            await self._insert_splitting(batch[:middle])
            await self._insert_splitting(batch[middle:])

    async def _insert(self, batch: list[tuple[Any, str, datetime, str, str]]) -> None:
        run_ids = []
        keep = []
        for item in batch:
            try:
                run_ids.append(_uuid(item[0]))
                keep.append(item)
            except ValueError:
                continue  # not a run id at all: nothing to attach it to
        if not keep:
            return
        async with self._pool.acquire() as conn:
            await conn.execute(
                QUERIES["insert_logs"],
                run_ids,
                [i[1] for i in keep],
                [i[2] for i in keep],
                [i[3] for i in keep],
                [clean_text(i[4], MAX_LOG_LINE_CHARS) for i in keep],
            )


def _uuid(text: str) -> Any:
    import uuid

    return uuid.UUID(text)
