"""Slot plan and run-outcome decisions: the coordinator's pure logic."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from zephyr.coordinator.outcomes import FinishedRun, decide
from zephyr.coordinator.registry import Registry, WorkerSession, slot_plan

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def session(
    worker_id: str, capacity: int, busy: int = 0, types: tuple[str, ...] = ("internal",)
) -> WorkerSession:
    s = WorkerSession(worker_id, capacity, frozenset(types))
    for i in range(busy):
        s.outstanding[f"{worker_id}-{i}"] = 1
    return s


def test_plan_gives_each_slot_to_the_worker_with_most_free() -> None:
    plan = slot_plan([session("a", 5, busy=1), session("b", 2), session("c", 3, busy=3)])
    assert Counter(plan) == {"a": 4, "b": 2}
    # the most free first: a (4) a (3) then a/b alternate at equal counts
    assert plan[:2] == ["a", "a"]
    assert "c" not in plan


def test_plan_never_exceeds_capacity_and_skips_draining() -> None:
    drained = session("d", 10)
    drained.draining = True
    plan = slot_plan([session("a", 1), drained])
    assert plan == ["a"]


def test_ties_rotate_between_plans() -> None:
    sessions = [session("a", 1), session("b", 1), session("c", 1)]
    firsts = {slot_plan(sessions, rotation)[0] for rotation in range(3)}
    assert firsts == {"a", "b", "c"}


def test_registry_groups_workers_by_types() -> None:
    registry = Registry()
    registry.add(session("a", 2, types=("internal", "http")))
    registry.add(session("b", 3, types=("shell",)))
    registry.add(session("c", 1, types=("http", "internal")))
    plans = dict((tuple(types), plan) for types, plan in registry.plans(100))
    assert Counter(plans[("http", "internal")]) == {"a": 2, "c": 1}
    assert plans[("shell",)] == ["b", "b", "b"]
    limited = registry.plans(2)
    assert sum(len(plan) for _types, plan in limited) == 2


def test_group_limit_caps_each_group_and_keeps_the_most_deserving_slots() -> None:
    registry = Registry()
    registry.add(session("a", 10, types=("internal",)))
    registry.add(session("b", 4, types=("internal",)))
    registry.add(session("c", 6, types=("shell",)))
    plans = dict((tuple(types), plan) for types, plan in registry.plans(100, lambda types: 3))
    # every group gets its own share: a small limit never starves the group with fewer free slots
    assert Counter(plans[("internal",)]) == {"a": 3}
    assert plans[("shell",)] == ["c", "c", "c"]
    assert (
        slot_plan([session("a", 2), session("b", 2)], 0, limit=3)
        == slot_plan([session("a", 2), session("b", 2)], 0)[:3]
    )


def finished(**overrides: Any) -> FinishedRun:
    run_id = uuid.uuid4()
    base: dict[str, Any] = {
        "run_id": run_id,
        "task_id": uuid.uuid4(),
        "attempt": 1,
        "status": "succeeded",
        "scheduled_for": NOW - timedelta(seconds=5),
        "started_at": NOW - timedelta(seconds=4),
        "task_status": "running",
        "attempts": 1,
        "max_attempts": 3,
        "recurring": False,
        "overlap": False,
        "schedule": None,
        "last_run_id": run_id,
    }
    base.update(overrides)
    return FinishedRun(**base)


def no_backoff(_attempt: int) -> float:
    return 2.0


def test_success_of_a_one_off_task() -> None:
    update = decide(finished(), now=NOW, backoff=no_backoff)
    assert update is not None and update.status == "succeeded" and update.expected == "running"


def test_failure_retries_after_backoff_until_attempts_run_out() -> None:
    update = decide(finished(status="failed", attempts=2), now=NOW, backoff=no_backoff)
    assert update is not None and (update.status, update.next_run_at) == (
        "pending",
        NOW + timedelta(seconds=2),
    )
    update = decide(finished(status="lost", attempts=3), now=NOW, backoff=no_backoff)
    assert update is not None and update.status == "dead"


def test_lost_run_retries_at_once_without_backoff() -> None:
    update = decide(finished(status="lost", attempts=1), now=NOW, backoff=no_backoff)
    assert update is not None and (update.status, update.next_run_at) == ("pending", NOW)


def test_non_retryable_failure_is_dead_at_once() -> None:
    update = decide(finished(status="failed", retryable=False), now=NOW, backoff=no_backoff)
    assert update is not None and update.status == "dead"


def test_a_cancel_the_task_did_not_ask_for_is_a_retryable_failure() -> None:
    # A worker cancels a run when told to; told by a stray NOTIFY on zephyr_cancel (a publish task
    # could send one), it reported CANCELLED not retryable and the task was dead at attempt 1.
    update = decide(finished(status="cancelled", retryable=False), now=NOW, backoff=no_backoff)
    assert update is not None and (update.status, update.next_run_at) == (
        "pending",
        NOW + timedelta(seconds=2),
    )
    update = decide(finished(status="cancelled", retryable=False, attempts=3), now=NOW, backoff=no_backoff)
    assert update is not None and update.status == "dead"


def test_cancelled_or_paused_or_reclaimed_task_is_left_alone() -> None:
    assert decide(finished(task_status="cancelled"), now=NOW, backoff=no_backoff) is None
    assert decide(finished(task_status="paused"), now=NOW, backoff=no_backoff) is None
    assert decide(finished(last_run_id=uuid.uuid4()), now=NOW, backoff=no_backoff) is None


def test_recurring_goes_to_next_firing_on_success_and_on_final_failure() -> None:
    schedule = {"every_s": 60}
    scheduled = NOW - timedelta(seconds=150)  # two ticks missed
    for status, attempts in (("succeeded", 1), ("failed", 3)):
        update = decide(
            finished(
                status=status, attempts=attempts, recurring=True, schedule=schedule, scheduled_for=scheduled
            ),
            now=NOW,
            backoff=no_backoff,
        )
        assert update is not None
        assert (update.status, update.attempts) == ("pending", 0)
        assert update.next_run_at == scheduled + timedelta(seconds=180)


def test_recurring_past_its_end_succeeds() -> None:
    schedule = {"every_s": 60, "end_at": NOW.isoformat()}
    update = decide(finished(recurring=True, schedule=schedule), now=NOW, backoff=no_backoff)
    assert update is not None and update.status == "succeeded"


def test_overlap_task_left_running_at_its_claim_gets_its_next_firing_when_the_run_ends() -> None:
    scheduled = NOW - timedelta(seconds=5)
    schedule = {"every_s": 60, "overlap": True}
    run = finished(recurring=True, overlap=True, schedule=schedule, scheduled_for=scheduled)
    update = decide(run, now=NOW, backoff=no_backoff)
    assert update is not None
    assert (update.status, update.next_run_at) == ("pending", scheduled + timedelta(seconds=60))
    ended = {"every_s": 60, "overlap": True, "end_at": NOW.isoformat()}
    update = decide(finished(recurring=True, overlap=True, schedule=ended), now=NOW, backoff=no_backoff)
    assert update is not None and update.status == "succeeded"


def test_overlap_task_pending_again_is_untouched() -> None:
    run = finished(
        recurring=True, overlap=True, schedule={"every_s": 60, "overlap": True}, task_status="pending"
    )
    assert decide(run, now=NOW, backoff=no_backoff) is None


def test_a_lost_overlap_firing_runs_again_even_while_a_newer_firing_is_being_claimed() -> None:
    """Between a newer firing's claim and its reschedule the task is running on that newer run:
    the lost firing must still run again (the chaos test found it dropped)."""
    schedule = {"every_s": 60, "overlap": True}
    scheduled = NOW - timedelta(seconds=5)
    for task_status in ("pending", "running"):
        run = finished(
            status="lost",
            recurring=True,
            overlap=True,
            schedule=schedule,
            scheduled_for=scheduled,
            task_status=task_status,
            last_run_id=uuid.uuid4(),
        )
        update = decide(run, now=NOW, backoff=no_backoff)
        assert update is not None and update.repoint
        assert (update.expected, update.status, update.next_run_at) == (task_status, "pending", scheduled)


def test_finished_runs_awaiting_their_commit_free_at_most_capacity_slots() -> None:
    s = session("w", 2, busy=6)
    for run_id in list(s.outstanding)[:5]:
        s.report_finished(run_id)
    # Five finished, their endings not yet committed: two slots back, not five (one still runs).
    assert s.free == 0
    for run_id in list(s.outstanding)[:4]:
        s.settle(run_id)
    assert s.free == 1  # one finished awaiting, one running
