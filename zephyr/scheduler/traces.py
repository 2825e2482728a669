"""The trace context of a submit: the `traceparent` header read, the `submit` span, what is kept.

An invalid or repeated `traceparent` header is ignored, as the W3C recommendation asks, and the
answer says so in a warning naming the header. The task keeps, as its `traceparent`:
- with span export on (`zephyr.tracing`), the `submit` span's context: a child of the header's
  span, or the root of a new trace without a valid header;
- with export off, the header's context as sent (version 00 form); nothing without one.
A batch is one submit: one header and one span for all its tasks, which share the trace context.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from aiohttp import web

from zephyr import tracecontext, tracing
from zephyr.taskstore import NewTask
from zephyr.tracecontext import TraceParent

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger(__name__)

INVALID_WARNING = {
    "code": "invalid_traceparent",
    "message": "the traceparent header is not a valid W3C trace context and was ignored",
    "field": tracecontext.HEADER,
}


def read_traceparent(request: web.Request) -> tuple[TraceParent | None, list[dict[str, str]]]:
    """The request's trace context, and the warning to answer when its header was ignored."""
    values = request.headers.getall(tracecontext.HEADER, ())
    if not values:
        return None, []
    parsed = tracecontext.parse(values[0]) if len(values) == 1 else None
    return parsed, [] if parsed is not None else [dict(INVALID_WARNING)]


class SubmitTrace:
    """What one submit keeps of its trace context, and its span while it is open."""

    __slots__ = ("context", "span", "warnings")

    def __init__(
        self, context: TraceParent | None, warnings: list[dict[str, str]], span: Span | None
    ) -> None:
        self.context = context
        self.warnings = warnings
        self.span = span

    @property
    def header(self) -> str | None:
        """The `traceparent` the submitted tasks keep."""
        return None if self.context is None else self.context.header()

    def created(self, task_ids: Sequence[str], rows: Sequence[NewTask]) -> None:
        """Note the tasks this submit made (or found by their idempotency keys)."""
        if self.context is None:
            return
        if log.isEnabledFor(logging.DEBUG):
            for task_id in task_ids:
                log.debug(
                    "submitted task %s",
                    task_id,
                    extra={"task_id": task_id, "trace_id": self.context.trace_id},
                )
        if self.span is not None:
            with tracing.never_raises("the submit span"):
                self.span.set_attributes(
                    {
                        "zephyr.task.count": len(task_ids),
                        "zephyr.task.type": sorted({row.type for row in rows}),
                    }
                )
                if len(task_ids) == 1:
                    self.span.set_attribute("zephyr.task.id", task_ids[0])


@contextmanager
def submit_trace(request: web.Request) -> Iterator[SubmitTrace]:
    """The trace context of a submit; with span export on, the `submit` span lasts the block
    (if the SDK fails, the submit goes on as with export off)."""
    incoming, warnings = read_traceparent(request)
    span = _submit_span(incoming, request.path) if tracing.STATE.enabled else None
    if span is None:
        yield SubmitTrace(incoming, warnings, None)
        return
    try:
        yield SubmitTrace(tracing.context_of(span), warnings, span)
    except Exception as exc:
        with tracing.never_raises("the submit span"):
            tracing.fail(span, type(exc).__name__)
        raise
    finally:
        with tracing.never_raises("the submit span"):
            span.end()


def _submit_span(incoming: TraceParent | None, path: str) -> Span | None:
    with tracing.never_raises("the submit span"):
        return tracing.start("submit", incoming, {"http.route": path})
    return None
