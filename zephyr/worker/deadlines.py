"""Run timeouts with one event-loop timer per millisecond that holds deadlines, not one per run.

The runs of one assignment message start together and mostly share a timeout_s, so they share a
deadline. Creating and cancelling a loop timer per run (what `asyncio.timeout` does) cost more
CPU than a no-op run itself. Deadlines are rounded up to the next millisecond: they never fire
early, and the loops' own timers are no finer than a millisecond anyway.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)

_MS_PER_S = 1000


class Deadlines(Generic[T]):
    """Calls `expire(item)` once for each item still registered when its deadline passes."""

    def __init__(self, expire: Callable[[T], None]) -> None:
        self._expire = expire
        # deadline (loop time, ms) -> the loop timer for it and the items due then
        self._due: dict[int, tuple[asyncio.TimerHandle, set[T]]] = {}
        self._newest = 0  # the key added last; its timer stays armed while empty (see remove)

    def __len__(self) -> int:
        """Items registered and not yet expired or removed."""
        return sum(len(items) for _, items in self._due.values())

    def add(self, item: T, timeout_s: float) -> int:
        """Register `item` to expire `timeout_s` from now; returns the key `remove` takes."""
        loop = asyncio.get_running_loop()
        key = math.ceil((loop.time() + timeout_s) * _MS_PER_S)
        due = self._due.get(key)
        if due is None:
            self._drop_if_empty(self._newest)
            due = self._due[key] = (loop.call_at(key / _MS_PER_S, self._fire, key), set())
            self._newest = key
        due[1].add(item)
        return key

    def remove(self, item: T, key: int) -> None:
        """Forget `item` (no-op when it already expired); the last item out stops the timer.

        Except for the newest deadline's timer: a run that ends within the millisecond it started
        in would otherwise create and cancel a timer of its own. That one empty timer is stopped
        as soon as a later deadline is added, or fires with nothing to do.
        """
        due = self._due.get(key)
        if due is None:
            return
        due[1].discard(item)
        if key != self._newest:
            self._drop_if_empty(key)

    def _drop_if_empty(self, key: int) -> None:
        due = self._due.get(key)
        if due is not None and not due[1]:
            due[0].cancel()
            del self._due[key]

    def _fire(self, key: int) -> None:
        _, items = self._due.pop(key)
        for item in items:
            self._expire(item)
