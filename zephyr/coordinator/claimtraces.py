"""The `claim` and `dispatch` spans of one claim's runs, when spans are exported (zephyr.tracing).

Per claimed run, in its task's trace (the task's `traceparent`; a task without one starts a trace
here): `claim` lasts the claim statement, `dispatch` is its child and lasts from the claim's commit
until the assignment was handed to the worker's stream (or found undeliverable). The run's
Assignment carries the `dispatch` span's context, so the worker's `run` span is its child.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from zephyr import tracing
from zephyr.tracecontext import TraceParent, parse_stored

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class ClaimTraces:
    """The open `dispatch` span (and its context) of every run of one claim. Best effort: a run
    whose spans the SDK failed to make goes out with its task's own context (the failure logged)."""

    def __init__(self, rows: Sequence[Any], started_ns: int, coordinator_id: str) -> None:
        claimed_ns = time.time_ns()
        self._spans: dict[Any, Span] = {}
        self._contexts: dict[Any, TraceParent] = {}
        for row in rows:
            with tracing.never_raises("the claim and dispatch spans"):
                self._start(row, started_ns, claimed_ns, coordinator_id, len(rows))

    def _start(self, row: Any, started_ns: int, claimed_ns: int, coordinator_id: str, runs: int) -> None:
        attributes = {
            "zephyr.task.id": str(row["task_id"]),
            "zephyr.task.type": row["type"],
            "zephyr.run.id": str(row["run_id"]),
            "zephyr.run.attempt": row["attempt"],
            "zephyr.worker.id": row["worker_id"],
            "zephyr.coordinator.id": coordinator_id,
        }
        claim = tracing.start("claim", parse_stored(row["traceparent"]), attributes, started_ns)
        claim.set_attribute("zephyr.claim.runs", runs)
        claim.end(claimed_ns)
        dispatch = tracing.start("dispatch", tracing.context_of(claim), attributes, claimed_ns)
        self._spans[row["run_id"]] = dispatch
        self._contexts[row["run_id"]] = tracing.context_of(dispatch)

    def context(self, row: Any) -> TraceParent | None:
        """The context the run's worker gets: its `dispatch` span's, else its task's."""
        return self._contexts.get(row["run_id"]) or parse_stored(row["traceparent"])

    def dispatched(self, rows: Iterable[Any], *, sent: bool) -> None:
        """End the `dispatch` spans of `rows`: handed to the stream, or not (`sent`)."""
        for row in rows:
            span = self._spans.pop(row["run_id"], None)
            if span is None:
                continue
            with tracing.never_raises("the dispatch span"):
                if not sent:
                    tracing.fail(span, "the worker left before the assignment was sent")
                tracing.end(span, {"zephyr.dispatch.sent": sent})


def trace_id(row: Any, traces: ClaimTraces | None) -> str | None:
    """The trace id of a claimed run (for its log lines)."""
    context = traces.context(row) if traces is not None else parse_stored(row["traceparent"])
    return None if context is None else context.trace_id


def assignment_traceparent(row: Any, traces: ClaimTraces | None) -> str:
    """Assignment.traceparent of a claimed run: the dispatch span's context, else the task's."""
    if traces is not None:
        context = traces.context(row)
        return "" if context is None else context.header()
    return row["traceparent"] or ""
