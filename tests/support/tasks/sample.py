"""Internal task functions registered the way a user module would, for worker tests."""

from __future__ import annotations

import asyncio
import logging
import threading

import zephyr


@zephyr.task("tests.add")
def add(a: int, b: int) -> int:
    """Sync: runs in the worker's thread pool."""
    return a + b


@zephyr.task("tests.thread_name")
def thread_name() -> str:
    return threading.current_thread().name


@zephyr.task("tests.async_greet")
async def async_greet(name: str = "world") -> dict[str, str]:
    return {"greeting": f"hello {name}"}


@zephyr.task("tests.boom")
def boom(message: str) -> None:
    raise ValueError(message)


@zephyr.task("tests.not_json")
def not_json() -> object:
    return object()


@zephyr.task("tests.echo_secret")
def echo_secret(value: str) -> dict[str, str]:
    """Returns what it was given: a secret passed in must come back masked."""
    return {"value": value, "again": f"<{value}>"}


@zephyr.task("tests.raise_timeout")
async def raise_timeout() -> None:
    """Raises TimeoutError of its own: a failure, not the run's timeout."""
    raise TimeoutError("upstream did not answer")


@zephyr.task("tests.stubborn")
async def stubborn(seconds: float = 0.5) -> str:
    """Ignores one cancellation (as a badly behaved function may) and returns anyway."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        return "kept going"
    return "slept"


@zephyr.task("tests.unstorable")
def unstorable(kind: str) -> object:
    """A result PostgreSQL would refuse: a non-finite float, a lone surrogate, or too large."""
    values: dict[str, object] = {
        "nan": {"x": float("nan")},
        "inf": [float("inf")],
        "surrogate": "a\ud800b",
        "large": "x" * (2 * 1024 * 1024),
    }
    return values[kind]


@zephyr.task("tests.log_line")
async def log_line(message: str) -> None:
    """Logs `message` through the standard logging module, as task code would."""
    logging.getLogger("tests.sample").warning("%s", message)
