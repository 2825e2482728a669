"""The executor interface, the context a run gets, and payload field checks.

An executor runs one task type. `execute(ctx, payload)` gets the payload with secrets already
resolved, returns a JSON-serialisable result on success, and raises `TaskFailed` (or its
subclass `RunFailure`, which also carries a result) to fail the run. Any other exception fails
the run with code `exception`. Cancellation and timeouts arrive as `asyncio.CancelledError`: an
executor that owns outside resources (processes) releases them before letting it propagate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any, NamedTuple, Protocol

from zephyr.errors import TaskFailed


class LogStream:
    """Values of the protocol's LogStream enum (kept here so executors need no grpc import)."""

    STDOUT = 1
    STDERR = 2
    SYSTEM = 3


class RunContext(NamedTuple):
    """What an executor knows about the run it executes (immutable).

    A NamedTuple rather than a frozen dataclass: one is built per run, and a frozen dataclass
    sets each field through object.__setattr__, which costs about twice as much.
    """

    run_id: str
    attempt: int
    task_id: str
    task_name: str
    timeout_s: float
    # log(stream, line, cut=False): append one line to the run's logs (masked, capped, may wait
    # under load); cut=True when the line was cut at the length limit.
    log: Callable[..., Awaitable[None]]


class Executor(Protocol):
    """Runs the payloads of one task type."""

    type: str

    async def execute(self, ctx: RunContext, payload: dict[str, Any]) -> Any:
        """Run `payload`; return the result or raise TaskFailed."""
        ...

    async def close(self) -> None:
        """Release pooled resources (sessions, connections)."""
        ...


class RunFailure(TaskFailed):
    """A failed run that still has a result to report (an HTTP status, an exit code)."""

    def __init__(self, message: str, *, code: str, result: Any = None, retryable: bool = True) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.result = result


def invalid(field: str, message: str) -> TaskFailed:
    """A non-retryable failure for a bad payload field: retrying cannot fix the payload."""
    return TaskFailed(f"payload.{field}: {message}", code="invalid_payload", retryable=False)


def check_fields(payload: Any, allowed: Collection[str], required: Collection[str] = ()) -> dict[str, Any]:
    """`payload` as a dict, refusing unknown and missing fields by name."""
    if not isinstance(payload, dict):
        raise TaskFailed("payload: must be a JSON object", code="invalid_payload", retryable=False)
    for key in payload:
        if key not in allowed:
            raise invalid(key, "unknown field")
    for key in sorted(required):
        if key not in payload:
            raise invalid(key, "is required")
    return payload


def get_str(payload: dict[str, Any], field: str, default: str | None = None) -> str | None:
    value = payload.get(field, default)
    if value is not None and not isinstance(value, str):
        raise invalid(field, "must be a string")
    return value


def get_str_map(payload: dict[str, Any], field: str) -> dict[str, str]:
    value = payload.get(field) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid(field, "must be an object of strings")
    return value


def get_str_list(payload: dict[str, Any], field: str) -> list[str]:
    """A string or a list of strings, as a list."""
    value = payload.get(field)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise invalid(field, "must be a string or a list of strings")
