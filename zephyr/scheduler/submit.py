"""Creating tasks: validated models to rows, one insert per task or one statement per batch.

A batch inserts and NOTIFYs `zephyr_tasks` in one statement (one notifying commit per thousand
rows); so does a single insert when it is the scheduler's only one in flight, and otherwise it
commits first and the DueNotifier notifies after (see there why).
An existing idempotency key makes no new row: the unique index decides, so concurrent repeats
create one task.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg

from zephyr import metrics, schedule, taskstore
from zephyr.db.queries import QUERIES
from zephyr.errors import InvalidSchedule, ValidationError
from zephyr.ids import new_id, new_ids
from zephyr.scheduler.notifier import DueNotifier
from zephyr.scheduler.schemas import AnyTask, json_text, stored_payload_json, stored_schedule


class NewTask(NamedTuple):
    """The column values of one task to insert, in the order the insert queries take them after
    the id; `payload` and `schedule` are JSON text. Values of one field are of one type (no
    `1 == 1.0 == True` surprises when `shared_or_each` compares them)."""

    name: str
    type: str
    payload: str
    schedule: str | None
    recurring: bool
    overlap: bool
    priority: int
    max_attempts: int
    timeout_s: float
    next_run_at: datetime
    idempotency_key: str | None


def first_run_at(stored: dict[str, Any] | None, now: datetime, field_prefix: str = "") -> datetime:
    """When a task with schedule `stored` first fires; InvalidSchedule when never."""
    try:
        fire = schedule.first_fire(stored, now)
    except (ValueError, KeyError, OverflowError) as exc:
        field = "schedule.cron" if stored and "cron" in stored else "schedule"
        raise InvalidSchedule(f"the schedule never fires: {exc}", field=field_prefix + field) from None
    if fire is None:
        raise InvalidSchedule(
            "the schedule has ended: `end_at` has passed", field=field_prefix + "schedule.end_at"
        )
    return fire


def to_row(
    task: AnyTask, now: datetime, field_prefix: str = "", idempotency_key: str | None = None
) -> NewTask:
    """The row of a validated task; `idempotency_key` (the header) wins over the field."""
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
    )


def row_values(task_id: uuid.UUID, task: NewTask) -> tuple[Any, ...]:
    """A new task's column values in the order `insert_task` takes them."""
    return (task_id, *task)


async def create_task(
    pool: asyncpg.Pool, task: NewTask, notifier: DueNotifier
) -> tuple[dict[str, Any], bool]:
    """Insert `task` and tell coordinators (in its transaction or, through `notifier`, after it);
    (the task, True) when created, (the first task, False) on a repeated key."""
    with notifier.single_insert() as notify_in_transaction:
        row = await pool.fetchrow(
            QUERIES["insert_task"],
            *row_values(new_id(), task),
            taskstore.rfc3339(task.next_run_at) if notify_in_transaction else None,
        )
    if row is not None:
        if not notify_in_transaction:
            notifier.due(task.next_run_at)
        metrics.child(metrics.TASKS_SUBMITTED, task.type).inc()
        return taskstore.task_dict(row), True
    existing = await pool.fetchrow(QUERIES["get_task_by_idempotency_key"], task.idempotency_key)
    if existing is None:  # the first one was deleted in between: extremely unlikely; try again
        return await create_task(pool, task, notifier)
    return taskstore.task_dict(existing), False


def check_unique_keys(tasks: list[NewTask]) -> None:
    """Two tasks of one batch may not share an idempotency key."""
    seen: dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task.idempotency_key is None:
            continue
        if task.idempotency_key in seen:
            raise ValidationError(
                f"idempotency key repeats that of tasks[{seen[task.idempotency_key]}]",
                field=f"tasks[{index}].idempotency_key",
            )
        seen[task.idempotency_key] = index


def shared_or_each(column: tuple[Any, ...]) -> tuple[Any, ...]:
    """A column of a batch as `insert_tasks_batch` takes it: the one value when all rows share it
    (the usual batch differs only in ids), else every row's."""
    first = column[0]
    return (first,) if column.count(first) == len(column) else column


async def create_batch(pool: asyncpg.Pool, tasks: list[NewTask]) -> list[str]:
    """Insert all `tasks` in one statement (all or nothing); their ids in input order (for a
    repeated idempotency key, the id of the task that had it)."""
    if not tasks:
        return []
    check_unique_keys(tasks)
    columns = [shared_or_each(column) for column in zip(*tasks, strict=True)]
    rows = await pool.fetch(QUERIES["insert_tasks_batch"], new_ids(len(tasks)), *columns)
    created = Counter(task.type for row, task in zip(rows, tasks, strict=True) if row["created"])
    for task_type, count in created.items():
        metrics.child(metrics.TASKS_SUBMITTED, task_type).inc(count)
    ids: list[str] = []
    for row, task in zip(rows, tasks, strict=True):
        task_id = row["id"]
        if task_id is None:  # the key's first task committed while this statement ran
            existing = await pool.fetchrow(QUERIES["get_task_by_idempotency_key"], task.idempotency_key)
            task_id = existing["id"] if existing else None
        ids.append(str(task_id))
    return ids


def utcnow() -> datetime:
    return datetime.now(UTC)
