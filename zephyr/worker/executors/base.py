"""The executor interface, the context a run gets, and the failure of a bad payload.

An executor runs one task type. `execute(ctx, payload)` gets the payload with secrets already
resolved, parses it with `parse_resolved` and its type's model from `zephyr.tasktypes` (the model
the API validated with; `text`, `texts`, `text_map` give its string fields their plain type),
returns a JSON-serialisable result on success, and raises `TaskFailed` (or its subclass
`RunFailure`, which also carries a result) to fail the run. Any other exception fails
the run with code `exception`. Cancellation and timeouts arrive as `asyncio.CancelledError`: an
executor that owns outside resources (processes) releases them before letting it propagate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol, TypeVar

import pydantic

from zephyr.errors import TaskFailed
from zephyr.tasktypes.fields import Model, describe_error

M = TypeVar("M", bound=Model)


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
    # W3C `traceparent` for what the run calls: its trace, with the run as the parent span
    # ("" when the run has no trace context; zephyr.worker.runtraces).
    traceparent: str = ""


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


def text(value: str | dict[str, str]) -> str:
    """A `Str` field of a resolved payload: its string."""
    if isinstance(value, str):
        return value
    # Unreachable after resolution (the runner replaces every reference or fails the run).
    raise TaskFailed("payload: a secret reference was not resolved", code="invalid_payload", retryable=False)


def texts(value: str | dict[str, str] | list[str | dict[str, str]] | None) -> list[str]:
    """A `StrOrList` field of a resolved payload as a list of strings ([] when absent)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [text(item) for item in value]
    return [text(value)]


def text_map(value: dict[str, str | dict[str, str]]) -> dict[str, str]:
    """A `dict[str, Str]` field of a resolved payload with string values."""
    return {key: text(item) for key, item in value.items()}


def parse_resolved(model: type[M], payload: Any) -> M:
    """`payload` (secrets resolved) validated by its task type's `model`, the one the API used.

    A bad payload raises `invalid` naming the field with the API's message (`payload.url: ...`).
    """
    try:
        return model.model_validate(payload)
    except pydantic.ValidationError as exc:
        field, message = describe_error(exc.errors(include_url=False)[0], ("payload",))
        raise TaskFailed(f"{field}: {message}", code="invalid_payload", retryable=False) from None
