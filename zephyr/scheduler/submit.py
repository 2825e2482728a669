"""Creating tasks: validated models to rows, one insert per task or one statement per batch.

A batch inserts and NOTIFYs `zephyr_tasks` in one statement (one notifying commit per thousand
rows); so does a single insert when it is the scheduler's only one in flight, and otherwise it
commits first and the DueNotifier notifies after (see there why).
An existing idempotency key makes no new row: the unique index decides, so concurrent repeats
create one task.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg

from zephyr import metrics, schedule, taskstore
from zephyr.errors import Conflict, UnschedulableSchedule
from zephyr.scheduler.notifier import DueNotifier
from zephyr.scheduler.schemas import TaskBody
from zephyr.taskstore import NewTask, json_text, stored_payload_json, stored_schedule


def first_run_at(stored: dict[str, Any] | None, now: datetime, field_prefix: str = "") -> datetime:
    """When a task with schedule `stored` first fires; UnschedulableSchedule (409) when never: the
    schedule is valid (/openapi.json allows it) but its window is closed or empty (`end_at` has
    passed or comes before `start_at`), or no date matches its cron (`0 0 30 2 *`), or the firing
    lies beyond year 9999. A JSON Schema cannot compare two fields or look at the clock."""
    try:
        fire = schedule.first_fire(stored, now)
    except (ValueError, KeyError, OverflowError) as exc:
        field = "schedule.cron" if stored and "cron" in stored else "schedule"
        raise UnschedulableSchedule(f"the schedule never fires: {exc}", field=field_prefix + field) from None
    if fire is None:
        assert stored is not None  # only a window's end stops a schedule
        start, end = stored.get("start_at"), stored["end_at"]
        empty = start is not None and schedule.parse_instant(end) < schedule.parse_instant(start)
        message = "`end_at` is before `start_at`" if empty else "`end_at` has passed"
        raise UnschedulableSchedule(
            f"the schedule never fires: {message}", field=field_prefix + "schedule.end_at"
        )
    return fire


def to_row(
    task: TaskBody,
    now: datetime,
    field_prefix: str = "",
    idempotency_key: str | None = None,
    traceparent: str | None = None,
) -> NewTask:
    """The row of a validated task; `idempotency_key` (the header) wins over the field;
    `traceparent` is the trace context the task keeps (valid W3C version 00, or None)."""
    stored = stored_schedule(task.schedule)
    # Positional: a NamedTuple built by keyword costs twice as much, for each task of a batch.
    return NewTask(
        task.name,
        task.type,
        stored_payload_json(task.payload),
        None if stored is None else json_text(stored),
        schedule.is_recurring(stored),
        schedule.wants_overlap(stored),
        task.priority,
        task.max_attempts,
        task.timeout_s,
        first_run_at(stored, now, field_prefix),
        idempotency_key or task.idempotency_key,
        traceparent,
    )


async def create_task(
    pool: asyncpg.Pool, task: NewTask, notifier: DueNotifier
) -> tuple[dict[str, Any], bool]:
    """Insert `task` and tell coordinators (in its transaction or, through `notifier`, after it);
    (the task, True) when created, (the first task, False) on a repeated key."""
    with notifier.single_insert() as notify_in_transaction:
        created = await taskstore.insert_task(pool, task, notify=notify_in_transaction)
    if created is not None:
        if not notify_in_transaction:
            notifier.due(task.next_run_at)
        metrics.child(metrics.TASKS_SUBMITTED, task.type).inc()
        return created, True
    existing = await taskstore.get_task_by_idempotency_key(pool, task.idempotency_key)
    if existing is None:  # the first one was deleted in between: extremely unlikely; try again
        return await create_task(pool, task, notifier)
    return existing, False


def check_unique_keys(tasks: list[NewTask]) -> None:
    """Two tasks of one batch may not share an idempotency key: 409 (Conflict), since each task
    fits /openapi.json, which cannot say that a field differs across the items of a list."""
    seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task.idempotency_key is None:
            continue
        if task.idempotency_key in seen:
            raise Conflict(
                f"idempotency key repeats that of tasks[{seen[task.idempotency_key]}]",
                field=f"tasks[{index}].idempotency_key",
            )
        seen[task.idempotency_key] = index


async def create_batch(pool: asyncpg.Pool, tasks: list[NewTask]) -> list[str]:
    """Insert all `tasks` in one statement (all or nothing); their ids in input order (for a
    repeated idempotency key, the id of the task that had it)."""
    if not tasks:
        return []
    check_unique_keys(tasks)
    inserted = await taskstore.insert_batch(pool, tasks)
    created = Counter(task.type for (_, is_new), task in zip(inserted, tasks, strict=True) if is_new)
    for task_type, count in created.items():
        metrics.child(metrics.TASKS_SUBMITTED, task_type).inc(count)
    ids: list[str] = []
    for (task_id, _), task in zip(inserted, tasks, strict=True):
        if task_id is None:  # the key's first task committed while this statement ran
            existing = await taskstore.get_task_by_idempotency_key(pool, task.idempotency_key)
            ids.append(str(existing["id"] if existing else None))
        else:
            ids.append(str(task_id))
    return ids


def no_worker_warnings(
    types: list[str], offered: frozenset[str], *, single: bool = False
) -> list[dict[str, str]]:
    """A warning per task type of `types` that no active worker offers (`offered`), naming the
    field of its first task: such tasks are kept and wait until a worker offering the type comes."""
    first: dict[str, int] = {}
    for index, task_type in enumerate(types):
        if task_type not in offered:
            first.setdefault(task_type, index)
    return [
        {
            "code": "no_worker_for_type",
            "message": f"no active worker offers {task_type!r} tasks: the task waits until one does",
            "field": "type" if single else f"tasks[{index}].type",
        }
        for task_type, index in first.items()
    ]


def utcnow() -> datetime:
    return datetime.now(UTC)
