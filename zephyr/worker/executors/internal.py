"""`internal` runs: call a function registered with `@zephyr.task("name")`.

The payload is `zephyr.tasktypes.internal.InternalPayload`: `function` (the registered name),
`args` (list), `kwargs` (object), parsed once secrets are resolved. Async functions run
on the worker's loop; sync ones in a bounded thread pool, so they never block the stream (a sync
function cannot be interrupted: on timeout or cancel the run ends, the thread runs to its end).
The return value is the result and must be JSON-serialisable. `TaskFailed` raised by the
function keeps its code and `retryable`; any other exception fails the run with code
`exception` and "Type: message".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib
import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

from zephyr.errors import StartupError, TaskFailed
from zephyr.functions import lookup
from zephyr.tasktypes.internal import InternalPayload
from zephyr.worker import builtins  # noqa: F401  (registers zephyr.noop, zephyr.sleep, ...)
from zephyr.worker.executors.base import RunContext, parse_resolved

THREADS = 32


def import_modules(modules: Iterable[str]) -> None:
    """Import the modules of ZEPHYR_WORKER_IMPORTS; StartupError names the one that fails."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise StartupError(
                f"ZEPHYR_WORKER_IMPORTS: cannot import {name}: {type(exc).__name__}: {exc}"
            ) from exc


@functools.cache
def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether `fn` is a coroutine function; asked per run, answered once per function."""
    return inspect.iscoroutinefunction(fn)


class InternalExecutor:
    """Executes `internal` payloads against the task registry."""

    type = "internal"

    def __init__(self, imports: Iterable[str] = ()) -> None:
        import_modules(imports)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="zephyr-task")
        return self._pool

    async def execute(self, ctx: RunContext, payload: dict[str, Any]) -> Any:
        call = parse_resolved(InternalPayload, payload)
        name, args, kwargs = call.function, call.args, call.kwargs
        fn = lookup(name)
        if fn is None:
            # Retryable: another worker may have imported the module that registers it.
            raise TaskFailed(
                f"payload.function: {name!r} is not registered on this worker", code="unknown_function"
            )
        try:
            if _is_async(fn):
                result = await fn(*args, **kwargs)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self._threads(), functools.partial(fn, *args, **kwargs))
                if inspect.isawaitable(result):
                    result = await result
        except TaskFailed:
            raise
        except Exception as exc:
            raise TaskFailed(f"{type(exc).__name__}: {exc}", code="exception") from None
        if result is not None:
            try:
                json.dumps(result)
            except (TypeError, ValueError) as exc:
                raise TaskFailed(
                    f"result is not JSON-serialisable: {exc}", code="invalid_result", retryable=False
                ) from None
        return result

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
