"""Internal functions every worker offers: zephyr.noop, zephyr.sleep, zephyr.fail, zephyr.echo."""

from __future__ import annotations

import asyncio
from typing import Any

from zephyr.errors import TaskFailed
from zephyr.functions import task


@task("zephyr.noop")
async def noop() -> None:
    """Do nothing and succeed."""


@task("zephyr.sleep")
async def sleep(seconds: float = 1.0) -> dict[str, float]:
    """Sleep `seconds` (asynchronously: costs no thread) and succeed."""
    if not isinstance(seconds, int | float) or seconds < 0:
        raise TaskFailed(f"kwargs.seconds: must be a number >= 0, got {seconds!r}", retryable=False)
    await asyncio.sleep(seconds)
    return {"slept_s": float(seconds)}


@task("zephyr.fail")
async def fail(message: str = "failed on purpose") -> None:
    """Fail the run with `message` (retryable, so it exercises retries and the dead-letter)."""
    raise TaskFailed(str(message), code="failed")


@task("zephyr.echo")
async def echo(**kwargs: Any) -> dict[str, Any]:
    """Succeed with the kwargs as the result."""
    return kwargs
