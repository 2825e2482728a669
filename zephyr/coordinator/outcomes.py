"""What a finished run does to its task: retry, dead-letter, next firing, or done.

Pure functions, shared by completions, lease rescue and the timeout backstop, so that every way a
run can end follows the same state machine (docs/design.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from zephyr.schedule import next_fire

RUN_STATUSES = ("succeeded", "failed", "timed_out", "lost", "cancelled")


class FinishedRun(NamedTuple):
    """A run just ended (fenced update done), with its task as it is now."""

    run_id: Any
    task_id: Any
    attempt: int
    status: str  # run status it ended with
    scheduled_for: datetime
    started_at: datetime
    task_status: str
    attempts: int
    max_attempts: int
    recurring: bool
    overlap: bool
    schedule: Mapping[str, Any] | None
    last_run_id: Any
    retryable: bool = True
    # False: the run never reached its worker (undelivered, handed back unstarted): its attempt
    # does not count.
    charged: bool = True


class TaskUpdate(NamedTuple):
    """Set the task to `status`/`next_run_at`/`attempts`, only if it is still `expected`."""

    task_id: Any
    run_id: Any
    expected: str
    status: str
    next_run_at: datetime | None
    attempts: int
    # Point the task at this run again (an overlap firing run again: the claim reads the firing's
    # time from the task's last run), instead of requiring that it still points there.
    repoint: bool = False


def decide(
    run: FinishedRun,
    *,
    now: datetime,
    backoff: Callable[[int], float],
) -> TaskUpdate | None:
    """The task transition caused by `run` ending, or None when the task must not change.

    The task changes only while it is still in the state this run left it: `running` with
    `last_run_id` = this run. A cancelled or paused task is never touched. An overlap recurring
    task is `pending` at its next firing while its runs run: a lost firing of it runs again
    (within its attempts, like any lost run) by making the task due at that firing's time.
    A run that was never delivered (`charged` false) gives its attempt back.
    `backoff(attempt)` gives the retry delay in seconds.
    """
    if (
        run.status == "lost"
        and run.recurring
        and run.overlap
        and (run.task_status == "pending" or (run.task_status == "running" and run.last_run_id != run.run_id))
    ):
        # Running on another run: a newer firing's claim, between its commit and the reschedule
        # to pending (which then finds the task repointed and leaves it to this firing's rerun).
        return _rerun_overlap_firing(run)
    if run.task_status != "running" or run.last_run_id != run.run_id:
        return None
    if run.status == "succeeded":
        return _next_firing(run, now) if run.recurring else _update(run, "succeeded", None, run.attempts)
    if not run.charged:
        return _update(run, "pending", now, max(0, run.attempts - 1))
    return _after_failure(run, now, backoff)


def _update(run: FinishedRun, status: str, next_run_at: datetime | None, attempts: int) -> TaskUpdate:
    """Move the task, still `running` on `run`, to `status`."""
    return TaskUpdate(run.task_id, run.run_id, "running", status, next_run_at, attempts)


def _next_firing(run: FinishedRun, now: datetime) -> TaskUpdate:
    """The recurring task's next firing after `run`, or `succeeded` when its schedule has ended."""
    # The schedule goes on from the firing that ran, not from now: missed ticks fold into one.
    # An overlap task still running on this run was not put back to pending at its claim (its
    # schedule ended, or that step failed after the claim committed): the firing comes now.
    if run.schedule is None:
        return _update(run, "succeeded", None, run.attempts)
    fire = next_fire(run.schedule, previous=run.scheduled_for, now=max(run.started_at, now))
    if fire is None:
        return _update(run, "succeeded", None, run.attempts)
    return _update(run, "pending", fire, 0)


def _after_failure(run: FinishedRun, now: datetime, backoff: Callable[[int], float]) -> TaskUpdate:
    """A charged run that did not succeed: retry, next firing, or dead."""
    # An overlap firing that failed on its own is not retried (the next firing comes anyway); one
    # lost with its worker is.
    overlap_failed = run.recurring and run.overlap and run.status != "lost"
    # The task is still running on this run, so nobody cancelled it: a worker's CANCELLED here (a
    # stray cancel, a drain) is its own doing, a failure to retry however the worker marked it.
    retryable = run.retryable or run.status == "cancelled"
    can_retry = retryable and run.attempts < run.max_attempts and not overlap_failed
    if can_retry:
        # A lost run failed for its worker's sake, not its own: it runs again at once elsewhere.
        delay_s = 0.0 if run.status == "lost" else backoff(run.attempts)
        return _update(run, "pending", now + timedelta(seconds=delay_s), run.attempts)
    if run.recurring:
        return _next_firing(run, now)
    return _update(run, "dead", None, run.attempts)


def _rerun_overlap_firing(run: FinishedRun) -> TaskUpdate | None:
    """The lost run's firing of a `pending` overlap task is due again at once (its own firing time,
    already past), unless its attempts are used up. The claim reads the firing from the task's last
    run and its next firing from there: the schedule is not shifted."""
    attempts = run.attempt if run.charged else run.attempt - 1
    if attempts >= run.max_attempts:
        return None
    return TaskUpdate(
        run.task_id, run.run_id, run.task_status, "pending", run.scheduled_for, attempts, repoint=True
    )
