"""Test signals: a loop announces what it just did, and a test awaits that instead of sleeping.

A `Signal` is off until a test calls `init()`; off, `emit` only checks one attribute, so the
loops announce unconditionally (a value that takes work to compute only when `on`). On, every emitted value is queued in order: `wait()` takes the
next one (or fails after a timeout naming the signal), `taken()` takes those already there.
Values are emitted from the event loop the loops run on; tests await them on the same loop.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")

WAIT_S = 10.0


class Signal(Generic[T]):
    """One kind of event a loop announces; see the module docstring."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: asyncio.Queue[T] | None = None

    def init(self) -> None:
        """Start recording: values emitted from now on are kept for `wait` and `taken`."""
        self._queue = asyncio.Queue()

    @property
    def on(self) -> bool:
        """Whether a test records this signal: a value that costs something to compute is computed
        only then."""
        return self._queue is not None

    def emit(self, value: T) -> None:
        if self._queue is not None:
            self._queue.put_nowait(value)

    async def wait(self, timeout: float = WAIT_S) -> T:
        """The next value emitted (or already waiting); TimeoutError naming the signal after `timeout`."""
        queue = self._recording()
        try:
            return await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no {self.name} signal within {timeout}s") from None

    def taken(self) -> list[T]:
        """Every value emitted and not yet taken, oldest first, without waiting."""
        queue = self._recording()
        values: list[T] = []
        while not queue.empty():
            values.append(queue.get_nowait())
        return values

    def _recording(self) -> asyncio.Queue[T]:
        if self._queue is None:
            raise RuntimeError(f"the {self.name} signal was never init()-ed")
        return self._queue
