"""Process-wide logging set-up: one line per event, text for people or JSON for machines.

Every line carries the ids of what it is about where they apply: `coordinator_id` or `worker_id`
of the process (`bind`), `task_id`, `run_id`, `attempt`, `trace_id` of the run being executed
(`run_context`, held in a context variable, so an executor's own log lines have them too), or any
of these passed as `extra={...}` to a single call. Exceptions stay on their line (newlines
escaped). Zephyr's own lines log ids and codes, never payloads or results; what task code logs
inside a run passes through that run's secret masker (`mask_run_secrets`).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

CONTEXT_FIELDS = ("coordinator_id", "worker_id", "task_id", "run_id", "attempt", "trace_id")

_process_fields: dict[str, Any] = {}
_run_fields: ContextVar[dict[str, Any] | None] = ContextVar("zephyr_log_run_fields", default=None)
_run_mask: ContextVar[Callable[[str], str] | None] = ContextVar("zephyr_log_run_mask", default=None)


def bind(**fields: Any) -> None:
    """Fields every line of this process carries from now on (its coordinator or worker id);
    a field given as None is dropped."""
    for name, value in fields.items():
        if value in (None, ""):
            _process_fields.pop(name, None)
        else:
            _process_fields[name] = value


@contextmanager
def run_context(**fields: Any) -> Iterator[None]:
    """Fields the lines logged inside carry (in this asyncio task and the tasks it starts)."""
    token = _run_fields.set({k: v for k, v in fields.items() if v not in (None, "")})
    try:
        yield
    finally:
        _run_fields.reset(token)


def mask_run_secrets(mask: Callable[[str], str]) -> None:
    """Lines logged from here on in this run's context (task code included) pass through `mask`,
    which hides the secrets resolved for the run."""
    _run_mask.set(mask)


def _masked(text: str) -> str:
    mask = _run_mask.get()
    return mask(text) if mask is not None else text


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields of `record`: its own `extra`, else the run's, else the process's."""
    run = _run_fields.get() or {}
    found: dict[str, Any] = {}
    for name in CONTEXT_FIELDS:
        value = getattr(record, name, None)
        if value is None:
            value = run.get(name, _process_fields.get(name))
        if value is not None:
            found[name] = value
    return found


def _utc(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, service, logger, message, the context fields, and
    `exc` when there is one."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _utc(record),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": _masked(record.getMessage()),
            **fields_of(record),
        }
        if record.exc_info:
            entry["exc"] = _masked(self.formatException(record.exc_info))
        return json.dumps(entry, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger: message key=value ...` on one line; an exception follows as `exc=...`
    with its newlines escaped."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc(record)} {record.levelname:<5} {record.name}: {_masked(record.getMessage())}"
        extras = [f"{k}={v}" for k, v in fields_of(record).items()]
        if record.exc_info:
            extras.append("exc=" + json.dumps(_masked(self.formatException(record.exc_info))))
        line = " ".join([line, *extras])
        return line.replace("\r", "\\r").replace("\n", "\\n")


def setup(service: str, fmt: str = "text", level: str = "INFO") -> None:
    """Route all logging to stderr in `fmt` ("text" or "json") at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log is one line per request: too loud at thousands of requests a second.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
