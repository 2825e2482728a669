"""Spans are best effort: when the SDK fails, claims, dispatches and runs go on with the task's own
trace context and the failure is logged. The SDK's tracer is replaced by one that raises: the thing
under test is Zephyr's handling of a failure, not the SDK."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from zephyr import tracing
from zephyr.coordinator import claimtraces
from zephyr.coordinator.claimtraces import ClaimTraces
from zephyr.scheduler.traces import submit_trace
from zephyr.v1 import worker_pb2 as pb
from zephyr.worker.runtraces import RunTrace, run_trace

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Broken:
    """A tracer, and a span, whose every call raises."""

    def __getattr__(self, name: str) -> Any:
        def fails(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError(f"{name} is broken")

        return fails


@pytest.fixture
def broken_sdk() -> Iterator[None]:
    saved = (tracing.STATE.enabled, tracing.STATE.tracer)
    tracing.STATE.enabled, tracing.STATE.tracer = True, Broken()  # type: ignore[assignment]
    yield
    tracing.STATE.enabled, tracing.STATE.tracer = saved


def test_a_claim_goes_out_with_the_task_context(broken_sdk: None, caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        {"run_id": uuid.uuid4(), "task_id": uuid.uuid4(), "type": "http", "attempt": 1, "worker_id": "w1",
         "traceparent": traceparent}
        for traceparent in (TRACEPARENT, None)
    ]  # fmt: skip
    with caplog.at_level(logging.ERROR, "zephyr.tracing"):
        traces = ClaimTraces(rows, 0, "c1")
        assert [claimtraces.assignment_traceparent(r, traces) for r in rows] == [TRACEPARENT, ""]
        assert [claimtraces.trace_id(r, traces) for r in rows] == [TRACE_ID, None]
        traces.dispatched(rows, sent=True)
    assert "the claim and dispatch spans failed" in caplog.text


def test_a_run_goes_on_with_its_unexported_context(broken_sdk: None) -> None:
    trace = run_trace(
        pb.Assignment(run_id="r", task_id="t", type="http", attempt=1, traceparent=TRACEPARENT), "w"
    )
    assert trace.span is None and trace.trace_id == TRACE_ID
    assert trace.header.startswith(f"00-{TRACE_ID}-") and trace.header[36:52] != TRACEPARENT[36:52]


def test_a_failing_run_span_end_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    trace = RunTrace(None, Broken())  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, "zephyr.tracing"):
        trace.end(pb.Completion(outcome=pb.RUN_OUTCOME_SUCCEEDED))
    assert "the run span failed" in caplog.text
    assert trace.span is None


def test_a_submit_keeps_the_header_context(broken_sdk: None, caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request("POST", "/v1/tasks", headers={"traceparent": TRACEPARENT})
    with caplog.at_level(logging.ERROR, "zephyr.tracing"), submit_trace(request) as trace:
        assert (trace.header, trace.span) == (TRACEPARENT, None)
    assert "the submit span failed" in caplog.text
