"""What the worker has to say upstream, gathered so that many items travel in one message.

Two buffers feed the stream's single writer:
- log lines: bounded (`max_lines` lines and `max_bytes` of text, whichever comes first: a line
  is at most 16 KiB characters, so the count alone allowed hundreds of MB). A run that logs into a full buffer waits for room while the
  stream is up (back-pressure lands on the chatty run's own pipe reader, not on other runs'
  completions); while the stream is down, lines that do not fit are dropped and counted.
- completions: kept until the coordinator acks them (bounded by the runs the worker accepted).
  After a reconnect every unacked completion is sent again. A run's completion is held back
  while lines of that run are still buffered, so the coordinator sees its logs first.

A message holds at most MESSAGE_BUDGET_BYTES (estimated from its strings), far below the gRPC
limit: results are capped (zephyr/runoutput.py), so a completion always fits alone.

The writer calls `take()` whenever `wait()` returns: everything ready goes out at once when the
worker is idle, and what piles up during one write goes out together in the next one.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque

from zephyr.metrics import WORKER_LOG_LINES_DROPPED
from zephyr.runoutput import MESSAGE_BUDGET_BYTES
from zephyr.v1 import worker_pb2 as pb

MAX_LINES = 20_000
MAX_LINE_BYTES = 16 * 1024 * 1024  # of buffered log text (estimated like a message's size)
LINES_PER_MESSAGE = 1_000
COMPLETIONS_PER_MESSAGE = 500
# Per item beyond its strings: ids, numbers, field tags (an estimate on the generous side).
ITEM_OVERHEAD_BYTES = 128


class Outbox:
    """Buffers of log lines and unacked completions; one writer drains them."""

    def __init__(self, max_lines: int = MAX_LINES, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._lines: deque[pb.LogLine] = deque()
        self._line_bytes = 0  # estimated size of the buffered lines
        self._lines_by_run: Counter[str] = Counter()
        self._unacked: dict[str, pb.Completion] = {}
        self._to_send: dict[str, None] = {}  # run ids in completion order (a dict keeps order)
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._all_acked = asyncio.Event()
        self._all_acked.set()
        self.connected = False

    # -- producers ------------------------------------------------------------------------------

    async def put_line(self, line: pb.LogLine) -> bool:
        """Buffer `line`; wait for room while connected. False when it was dropped."""
        size = _line_size(line)
        while self._lines and (
            len(self._lines) >= self.max_lines or self._line_bytes + size > self.max_bytes
        ):
            if not self.connected:
                WORKER_LOG_LINES_DROPPED.inc()
                return False
            self._room.clear()
            await self._room.wait()
        self._lines.append(line)
        self._line_bytes += size
        self._lines_by_run[line.run_id] += 1
        self._wake.set()
        return True

    def complete(self, completion: pb.Completion) -> None:
        """Keep `completion` until acked and send it as soon as the run's lines are out."""
        self._unacked[completion.run_id] = completion
        self._to_send[completion.run_id] = None
        self._all_acked.clear()
        self._wake.set()

    def wake(self) -> None:
        """Make the writer look again (a heartbeat is due)."""
        self._wake.set()

    # -- coordinator answers --------------------------------------------------------------------

    def ack(self, run_id: str) -> pb.Completion | None:
        """Forget the completion of `run_id` (accepted or refused: either way it is settled)."""
        self._to_send.pop(run_id, None)
        completion = self._unacked.pop(run_id, None)
        if not self._unacked:
            self._all_acked.set()
        return completion

    def forget(self, run_id: str) -> None:
        """Drop a run the coordinator took back (Registered.abandon): never report it."""
        self.ack(run_id)
        if self._lines_by_run.pop(run_id, 0):
            self._lines = deque(line for line in self._lines if line.run_id != run_id)
            self._line_bytes = sum(_line_size(line) for line in self._lines)
            self._room.set()

    def unacked_refs(self) -> list[pb.RunRef]:
        return [pb.RunRef(run_id=c.run_id, attempt=c.attempt) for c in self._unacked.values()]

    def has_unacked(self, run_id: str) -> bool:
        return run_id in self._unacked

    async def wait_all_acked(self) -> None:
        await self._all_acked.wait()

    # -- the stream -----------------------------------------------------------------------------

    def set_connected(self, connected: bool) -> None:
        """Stream up (every unacked completion is due again) or down (waiting producers re-check)."""
        self.connected = connected
        if connected:
            self._to_send = dict.fromkeys(self._unacked)
            self._wake.set()
        self._room.set()

    async def wait(self) -> None:
        """Until something may be ready to send (or `wake()` was called)."""
        await self._wake.wait()
        self._wake.clear()

    def take(self) -> tuple[list[pb.LogLine], list[pb.Completion]]:
        """Remove and return what is ready: up to a message's worth of lines and completions."""
        lines: list[pb.LogLine] = []
        size = 0  # bytes of this message so far, estimated from its strings
        while self._lines and len(lines) < LINES_PER_MESSAGE and size < MESSAGE_BUDGET_BYTES:
            line = self._lines.popleft()
            line_size = _line_size(line)
            self._line_bytes -= line_size
            size += line_size
            lines.append(line)
            left = self._lines_by_run[line.run_id] - 1
            if left:
                self._lines_by_run[line.run_id] = left
            else:
                del self._lines_by_run[line.run_id]
        if lines:
            self._room.set()
        completions: list[pb.Completion] = []
        for run_id in list(self._to_send):
            if len(completions) >= COMPLETIONS_PER_MESSAGE:
                break
            if run_id not in self._lines_by_run:
                completion = self._unacked[run_id]
                item_size = len(completion.result_json) + len(completion.error_message) + ITEM_OVERHEAD_BYTES
                if completions and size + item_size > MESSAGE_BUDGET_BYTES:
                    break
                size += item_size
                del self._to_send[run_id]
                completions.append(completion)
        if self._lines or self._to_send:
            self._wake.set()  # more than one message's worth: the writer goes on
        return lines, completions


def _line_size(line: pb.LogLine) -> int:
    """A log line's share of a message (and of the buffer), estimated from its text."""
    return len(line.line) + ITEM_OVERHEAD_BYTES
