"""The trace context of one run on the worker, and its `run` span when spans are exported.

The run joins the trace its Assignment names (`traceparent`: the coordinator's `dispatch` span,
or the task's own context). With span export on (zephyr.tracing) a `run` span, child of that,
lasts the run; what the run calls (an `http` task's request) gets the `run` span's context. With
export off the run still has a span id of its own (random, not exported), so a callee's parent is
the run and the trace id is the task's. A run whose assignment names no valid context has no
trace context unless export is on (then the `run` span starts a trace).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zephyr import tracecontext, tracing
from zephyr.rpc import RUN_STATUS_OF_OUTCOME
from zephyr.tracecontext import TraceParent
from zephyr.v1 import worker_pb2 as pb

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class RunTrace:
    """A run's trace context (None: none) and its open `run` span (None: not exported)."""

    __slots__ = ("context", "span")

    def __init__(self, context: TraceParent | None, span: Span | None) -> None:
        self.context = context
        self.span = span

    @property
    def trace_id(self) -> str | None:
        return None if self.context is None else self.context.trace_id

    @property
    def header(self) -> str:
        """The `traceparent` a callee of the run gets ("" without a trace context)."""
        return "" if self.context is None else self.context.header()

    def end(self, completion: pb.Completion) -> None:
        """End the `run` span with the run's outcome (none: taken back by the coordinator)."""
        span, self.span = self.span, None
        if span is None:
            return
        status = RUN_STATUS_OF_OUTCOME.get(completion.outcome, "abandoned")
        with tracing.never_raises("the run span"):
            if status != "succeeded":
                tracing.fail(span, completion.error_code or status)
            tracing.end(span, {"zephyr.run.status": status})


NO_TRACE = RunTrace(None, None)


def run_trace(assignment: pb.Assignment, worker_id: str) -> RunTrace:
    """The trace context of the run `assignment` starts, its `run` span started if exported (if
    the SDK fails, the run goes on with its unexported context)."""
    header = assignment.traceparent
    parent = tracecontext.parse(header) if header else None
    unexported = NO_TRACE if parent is None else RunTrace(parent.child(), None)
    if not tracing.STATE.enabled:
        return unexported
    with tracing.never_raises("the run span"):
        return _exported(assignment, parent, worker_id)
    return unexported


def _exported(assignment: pb.Assignment, parent: TraceParent | None, worker_id: str) -> RunTrace:
    span = tracing.start(
        "run",
        parent,
        {
            "zephyr.task.id": assignment.task_id,
            "zephyr.task.type": assignment.type,
            "zephyr.run.id": assignment.run_id,
            "zephyr.run.attempt": assignment.attempt,
            "zephyr.worker.id": worker_id,
        },
    )
    return RunTrace(tracing.context_of(span), span)
