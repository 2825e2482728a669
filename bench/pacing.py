"""Open-loop pacing: start item i at t0 + i / rate, whatever the previous items are doing.

A closed loop (send, wait, send) would slow down with the system under test and hide its latency;
here a slow answer only makes more requests overlap, up to `max_in_flight`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def paced(
    rate_per_s: float,
    count: int,
    submit: Callable[[int], Awaitable[T]],
    *,
    max_in_flight: int = 64,
) -> list[T]:
    """Call `submit(i)` for i in range(count) at `rate_per_s`; return the results in order."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(max_in_flight)
    start = loop.time()

    async def one(index: int) -> T:
        try:
            return await submit(index)
        finally:
            gate.release()

    tasks: list[asyncio.Task[T]] = []
    for index in range(count):
        delay = start + index / rate_per_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        tasks.append(asyncio.create_task(one(index)))
    return list(await asyncio.gather(*tasks))


async def poll_until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float, interval_s: float = 0.05, what: str
) -> float:
    """Poll `check` until it is true; return the loop time at which it was first seen true.

    Raises TimeoutError naming `what` after `timeout_s`: every wait of the benchmark is bounded.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        if await check():
            return loop.time()
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(interval_s)
