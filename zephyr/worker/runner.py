"""Execution of assigned runs: one asyncio task per run, timeouts, cancel, abandon and drain.

Every run ends in exactly one of two ways: a Completion handed to the outbox (succeeded, failed,
timed out, cancelled), or silence when the coordinator took it back (`abandon`). Secrets are
resolved inside the run and every outgoing string of the run (log lines, result, error) passes
through that run's masker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from zephyr import logs
from zephyr.errors import TaskFailed
from zephyr.metrics import (
    WORKER_LOG_LINES_DROPPED,
    WORKER_RUNNING,
    WORKER_RUNS_FINISHED,
    WORKER_RUNS_STARTED,
    child,
)
from zephyr.rpc import RUN_STATUS_OF_OUTCOME
from zephyr.runoutput import MAX_ERROR_CHARS, MAX_LOG_LINE_CHARS, Unstorable, encode_result
from zephyr.runoutput import clean_text as storable_text
from zephyr.v1 import worker_pb2 as pb
from zephyr.worker.deadlines import Deadlines
from zephyr.worker.executors.base import Executor, LogStream, RunContext, RunFailure
from zephyr.worker.outbox import Outbox
from zephyr.worker.runtraces import NO_TRACE, RunTrace, run_trace
from zephyr.worker.secrets import NO_SECRETS, Masker, may_reference_secrets, resolve

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_S = 5.0
NOT_STARTED = "not_started"  # Completion.error_code of a run handed back without being started


@dataclass(eq=False, slots=True)
class Run:
    """One run executing on this worker (compared and hashed by identity)."""

    assignment: pb.Assignment
    run_id: str  # the assignment's, read once: every read of a protobuf string field builds a str
    task: asyncio.Task[None] | None = None
    # Why we stopped it ourselves: "cancel" (coordinator), "drain" (grace ran out), "abandon".
    stop_reason: str | None = None
    lines: int = 0
    truncated: bool = False
    timed_out: bool = False  # its timeout_s elapsed (the task was cancelled for it)
    masker: Masker = NO_SECRETS
    trace: RunTrace = NO_TRACE


def clean_text(text: str, masker: Masker, *, cut: bool = False, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` with secrets masked, cut to `limit` characters, NUL and lone surrogates replaced
    (PostgreSQL text and jsonb refuse them)."""
    return storable_text(masker.mask(text, cut=cut), limit)


def mask_value(value: Any, masker: Masker) -> Any:
    """`value` with secrets masked (and NULs replaced) in every string and key; keeps the JSON valid."""
    if isinstance(value, str):
        return clean_text(value, masker, limit=sys.maxsize)
    if isinstance(value, dict):
        return {
            clean_text(str(k), masker, limit=sys.maxsize): mask_value(v, masker) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_value(item, masker) for item in value]
    return value


class Runner:
    """Starts, stops and reports runs; holds at most what the coordinator assigned."""

    def __init__(
        self,
        executors: Mapping[str, Executor],
        outbox: Outbox,
        *,
        capacity: int,
        log_lines_per_run: int,
        environ: Mapping[str, str],
        worker_id: str = "",
    ) -> None:
        self.executors = executors
        self.worker_id = worker_id
        self.outbox = outbox
        self.capacity = capacity
        self.log_lines_per_run = log_lines_per_run
        self.environ = environ
        self.runs: dict[str, Run] = {}
        self.draining = False
        self._deadlines: Deadlines[Run] = Deadlines(self._time_out)
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def running(self) -> int:
        return len(self.runs)

    @property
    def free_slots(self) -> int:
        return 0 if self.draining else max(0, self.capacity - len(self.runs))

    def in_flight(self) -> list[pb.RunRef]:
        """Runs still executing, for Register.in_flight."""
        return [pb.RunRef(run_id=r.run_id, attempt=r.assignment.attempt) for r in self.runs.values()]

    def start(self, assignment: pb.Assignment) -> None:
        """Start executing `assignment` (a repeat of a run already held is ignored). While
        draining, it is handed back at once, unstarted (`not_started`: its attempt does not
        count, and another worker takes it without waiting for this one's lease)."""
        run_id = assignment.run_id
        if run_id in self.runs or self.outbox.has_unacked(run_id):
            log.warning("run %s assigned twice; keeping the first", run_id)
            return
        if self.draining:
            self.outbox.complete(
                pb.Completion(
                    run_id=run_id,
                    attempt=assignment.attempt,
                    outcome=pb.RUN_OUTCOME_CANCELLED,
                    error_code=NOT_STARTED,
                    error_message="handed back unstarted: the worker is stopping",
                    retryable=True,
                )
            )
            return
        run = Run(assignment, run_id, trace=run_trace(assignment, self.worker_id))
        self.runs[run_id] = run
        self._idle.clear()
        # The run's task starts in its own copy of the context: the run's ids go on its log lines.
        with logs.run_context(
            run_id=run_id, task_id=assignment.task_id, attempt=assignment.attempt, trace_id=run.trace.trace_id
        ):
            run.task = asyncio.create_task(self._execute(run), name=f"run-{run_id}")

    def cancel(self, run_id: str, attempt: int = 0, reason: str = "cancel") -> bool:
        """Stop a run; it is reported as cancelled. False when no such run executes here."""
        run = self.runs.get(run_id)
        if run is None or (attempt and run.assignment.attempt != attempt) or run.task is None:
            return False
        run.stop_reason = run.stop_reason or reason
        run.task.cancel()
        return True

    def abandon(self, run_id: str) -> None:
        """Stop a run the coordinator no longer gives us, and never report it."""
        run = self.runs.get(run_id)
        if run is not None and run.task is not None:
            run.stop_reason = "abandon"
            run.task.cancel()
        self.outbox.forget(run_id)

    async def drain(self, grace_s: float) -> None:
        """Take no new capacity; let runs finish for `grace_s`, then cancel and report the rest."""
        self.draining = True
        self.outbox.wake()
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            for run_id in list(self.runs):
                self.cancel(run_id, reason="drain")
            await self._idle.wait()

    async def close(self) -> None:
        """Cancel every run without reporting (shutdown); returns within SHUTDOWN_WAIT_S."""
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        for run in self.runs.values():
            run.stop_reason = "abandon"
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S)

    # -- one run --------------------------------------------------------------------------------

    async def _log(self, run: Run, stream: int, line: str, cut: bool = False) -> None:
        if run.lines >= self.log_lines_per_run:
            WORKER_LOG_LINES_DROPPED.inc()
            if not run.truncated:
                run.truncated = True
                await self.outbox.put_line(
                    pb.LogLine(
                        run_id=run.run_id,
                        ts_us=time.time_ns() // 1000,
                        stream=pb.LOG_STREAM_SYSTEM,
                        line=f"log truncated: more than {self.log_lines_per_run} lines, the rest is dropped",
                    )
                )
            return
        run.lines += 1
        if len(line) > MAX_LOG_LINE_CHARS:
            line, cut = line[:MAX_LOG_LINE_CHARS], True
        await self.outbox.put_line(
            pb.LogLine(
                run_id=run.run_id,
                ts_us=time.time_ns() // 1000,
                stream=cast("pb.LogStream.ValueType", stream),
                line=clean_text(line, run.masker, cut=cut, limit=MAX_LOG_LINE_CHARS)
                + (" [line cut]" if cut else ""),
            )
        )

    async def _execute(self, run: Run) -> None:
        a = run.assignment
        task_type = a.type
        started = time.monotonic()
        child(WORKER_RUNS_STARTED, task_type).inc()
        WORKER_RUNNING.inc()
        completion = pb.Completion(run_id=run.run_id, attempt=a.attempt)
        log.debug("run %s of task %s started", run.run_id, a.task_id)
        try:
            result = await self._call(run)
        except asyncio.CancelledError:
            if run.stop_reason in (None, "abandon"):
                raise
            _cancelled(completion, drained=run.stop_reason == "drain")
        except _TimedOut:
            completion.outcome = pb.RUN_OUTCOME_TIMED_OUT
            completion.error_code = "timeout"
            completion.error_message = f"timed out after {a.timeout_s:g}s"
            completion.retryable = True
        except TaskFailed as exc:
            _task_failed(completion, exc, run.masker)
        except Exception as exc:
            completion.outcome = pb.RUN_OUTCOME_FAILED
            completion.error_code = "exception"
            completion.error_message = clean_text(f"{type(exc).__name__}: {exc}", run.masker)
            completion.retryable = True
            log.error("run %s: executor error: %s", run.run_id, completion.error_message)
        else:
            _succeeded(completion, result, run.masker)
        finally:
            run.trace.end(completion)
            WORKER_RUNNING.dec()
            self.runs.pop(run.run_id, None)
            if not self.runs:
                self._idle.set()
        completion.duration_s = time.monotonic() - started
        status = RUN_STATUS_OF_OUTCOME[completion.outcome]
        log.debug("run %s of task %s ended: %s", run.run_id, a.task_id, status)
        child(WORKER_RUNS_FINISHED, task_type, status).inc()
        self.outbox.complete(completion)

    async def _call(self, run: Run) -> Any:
        """Resolve secrets and run the executor under the run's timeout."""
        a = run.assignment
        task_type = a.type
        executor = self.executors.get(task_type)
        if executor is None:
            raise TaskFailed(f"type: this worker does not run {task_type!r} tasks", code="unsupported_type")
        payload_json = a.payload_json
        try:
            payload = json.loads(payload_json) if payload_json else {}
        except ValueError as exc:
            raise TaskFailed(f"payload: not JSON: {exc}", code="invalid_payload", retryable=False) from None
        if may_reference_secrets(payload_json):
            payload, values = resolve(payload, self.environ)
            run.masker = Masker(values)
            logs.mask_run_secrets(run.masker.mask)

        async def log_line(stream: int, line: str, cut: bool = False) -> None:
            await self._log(run, stream, line, cut)

        timeout_s = a.timeout_s
        ctx = RunContext(
            run_id=run.run_id,
            attempt=a.attempt,
            task_id=a.task_id,
            task_name=a.task_name,
            timeout_s=timeout_s,
            log=log_line,
            traceparent=run.trace.header,
        )
        if timeout_s <= 0:
            return await executor.execute(ctx, payload)
        key = self._deadlines.add(run, timeout_s)
        try:
            return await executor.execute(ctx, payload)
        except asyncio.CancelledError:
            # As with asyncio.timeout: the timeout wins only when nobody else also cancelled the run.
            if run.timed_out and cast("asyncio.Task[None]", run.task).uncancel() == 0:
                raise _TimedOut from None
            raise
        finally:
            self._deadlines.remove(run, key)

    def _time_out(self, run: Run) -> None:
        """`run` reached its timeout_s: cancel it; `_call` turns that into _TimedOut."""
        run.timed_out = True
        if run.task is not None:
            run.task.cancel()


class _TimedOut(Exception):
    """The run's own timeout_s elapsed."""


__all__ = ["LogStream", "Run", "Runner"]


def _cancelled(completion: pb.Completion, *, drained: bool) -> None:
    """The run was cancelled on request, or by a drain whose grace ran out (retried elsewhere)."""
    completion.outcome = pb.RUN_OUTCOME_CANCELLED
    completion.retryable = drained
    completion.error_code = "worker_draining" if drained else "cancelled"
    completion.error_message = (
        "cancelled: the worker drained and the grace period ran out" if drained else "cancelled on request"
    )


def _task_failed(completion: pb.Completion, exc: TaskFailed, masker: Masker) -> None:
    """The executor failed the run: its code, masked message and retryability, with its result if any."""
    completion.outcome = pb.RUN_OUTCOME_FAILED
    completion.error_code = exc.code
    completion.error_message = clean_text(str(exc), masker)
    completion.retryable = exc.retryable
    if isinstance(exc, RunFailure) and exc.result is not None:
        with contextlib.suppress(Unstorable):  # the failure stands; only its result is dropped
            completion.result_json = encode_result(mask_value(exc.result, masker))


def _succeeded(completion: pb.Completion, result: Any, masker: Masker) -> None:
    """The run succeeded; a result that cannot be stored fails it, not retried."""
    completion.outcome = pb.RUN_OUTCOME_SUCCEEDED
    if result is None:
        return
    try:
        completion.result_json = encode_result(mask_value(result, masker))
    except Unstorable as exc:
        completion.outcome = pb.RUN_OUTCOME_FAILED
        completion.error_code = exc.code
        completion.error_message = str(exc)
        completion.retryable = False
