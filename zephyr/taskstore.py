"""Task data access: every read and write of tasks, runs, their logs and workers that the HTTP API
(scheduler) and the Admin gRPC service (coordinator) make goes through here, and the stored form
of a new task (`NewTask`, `stored_*`: what the rows hold).

Every function takes `db`, an asyncpg Pool or Connection (a Connection already in a transaction
is fine: state changes then run in a savepoint), and returns plain dicts in SPEC's
representation: ids as strings, times as RFC 3339 UTC text (`...Z`) or None, JSON as Python
objects. Unknown ids raise `NotFound`; a state that does not allow the operation raises
`Conflict`. A malformed id is unknown (NotFound), never a database error.

State changes lock the task row (`SELECT ... FOR UPDATE`, `locked_task`), so they serialise with
each other and with the coordinator's claim and completion updates, and they notify in the same
transaction: `zephyr_tasks` when a task may have become due (or was pending while they held it),
`zephyr_cancel` with each run id whose worker must stop.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, overload

import asyncpg
import pydantic_core

from zephyr import schedule
from zephyr.db.pool import DB_ERRORS
from zephyr.db.queries import QUERIES
from zephyr.errors import Conflict, NotFound
from zephyr.ids import new_id, new_ids

if TYPE_CHECKING:
    from pydantic import BaseModel

DB: TypeAlias = "asyncpg.Pool | asyncpg.Connection"
TERMINAL_TASK_STATUSES = frozenset({"succeeded", "dead", "cancelled"})
TASK_STATUSES = ("pending", "running", "succeeded", "dead", "cancelled", "paused")
RUN_TIME_FIELDS = ("scheduled_for", "started_at", "finished_at", "deadline_at")


# ---------------------------------------------------------------------------------------------
# Representations


@overload
def rfc3339(value: datetime) -> str: ...
@overload
def rfc3339(value: None) -> None: ...
@overload
def rfc3339(value: datetime | None) -> str | None: ...
def rfc3339(value: datetime | None) -> str | None:
    """An aware datetime as RFC 3339 UTC text ending in `Z`; None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_time(text: str | None) -> str | None:
    """A timestamp as PostgreSQL's to_jsonb writes it, re-written as RFC 3339 UTC."""
    if text is None:
        return None
    return rfc3339(datetime.fromisoformat(text))


def run_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `task_runs` row (or its to_jsonb) as SPEC's run."""
    from_json = isinstance(row.get("started_at"), str)
    out = {
        "id": str(row["id"]),
        "task_id": str(row["task_id"]),
        "attempt": row["attempt"],
        "status": row["status"],
        "worker_id": row["worker_id"],
        "result": row.get("result"),
        "error": row.get("error"),
    }
    for name in RUN_TIME_FIELDS:
        value = row.get(name)
        out[name] = _json_time(value) if from_json else rfc3339(value)
    return out


def task_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `tasks` row with its `last_run` column as SPEC's task."""
    last_run = row.get("last_run")
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "type": row["type"],
        "payload": row["payload"],
        "schedule": row["schedule"],
        "status": row["status"],
        "priority": row["priority"],
        "max_attempts": row["max_attempts"],
        "attempts": row["attempts"],
        "timeout_s": row["timeout_s"],
        "next_run_at": rfc3339(row["next_run_at"]),
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
        "recurring": row["recurring"],
        "overlap": row["overlap"],
        "idempotency_key": row["idempotency_key"],
        "traceparent": row["traceparent"],
        "last_run": run_dict(last_run) if last_run else None,
    }


def worker_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `workers` row as SPEC's worker."""
    return {
        "id": row["id"],
        "host": row["host"],
        "capacity": row["capacity"],
        "running": row["running"],
        "status": row["status"],
        "task_types": list(row["task_types"]),
        "last_heartbeat_at": rfc3339(row["last_heartbeat_at"]),
        "free_slots": row["free_slots"],
        "load": row["load"],
        "coordinator_id": row["coordinator_id"],
        "version": row["version"],
        "registered_at": rfc3339(row["registered_at"]),
    }


def log_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `task_logs` row as SPEC's log line."""
    return {"ts": rfc3339(row["ts"]), "stream": row["stream"], "line": row["line"]}


def parse_id(text: str | uuid.UUID, what: str = "task") -> uuid.UUID:
    """An id from the outside; a malformed one raises NotFound (ids are opaque)."""
    if isinstance(text, uuid.UUID):
        return text
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"no {what} {text!r}") from None


@asynccontextmanager
async def transaction(db: DB) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction (a savepoint when `db` is already in one)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db


@asynccontextmanager
async def _connection(db: DB) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


@asynccontextmanager
async def locked_task(db: DB, task_id: str | uuid.UUID) -> AsyncIterator[tuple[asyncpg.Connection, Any]]:
    """A transaction holding the task's row (`lock_task`): its connection and the row as locked.

    While it holds a pending row, claims skip that row (SKIP LOCKED) and no coordinator looks
    again until told. So whoever locked a pending task tells them once the lock is gone: a change
    that commits the task pending notifies in its transaction (`notify_due`, the caller's part);
    a transaction that rolls back (Conflict, an error) is followed by a notification here."""
    async with _connection(db) as conn:
        pending_at: datetime | None = None
        try:
            async with transaction(conn) as tx:
                row = await lock_task(tx, task_id)
                if row["status"] == "pending":
                    pending_at = row["next_run_at"]
                yield tx, row
        except Exception:
            if pending_at is not None:
                # The database away: coordinators look again when it is back.
                with contextlib.suppress(*DB_ERRORS):
                    await notify_due(conn, pending_at)
            raise


# ---------------------------------------------------------------------------------------------
# The stored form of a new task


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
    traceparent: str | None  # W3C, version 00 (zephyr.tracecontext)


def stored_payload(payload: BaseModel) -> dict[str, Any]:
    """A validated payload as stored: the fields sent, by their JSON names, secrets as given."""
    data: dict[str, Any] = payload.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return data


def stored_payload_json(payload: BaseModel) -> str:
    """`stored_payload(payload)` as JSON text (what the database parses into the same jsonb)."""
    # The serializer itself: model_dump_json's Python wrapper costs about as much as the work.
    return type(payload).__pydantic_serializer__.to_json(payload, by_alias=True, exclude_unset=True).decode()


def stored_schedule(schedule: BaseModel | None) -> dict[str, Any] | None:
    """A validated schedule as stored (None: run now): the fields sent, times as RFC 3339 UTC."""
    if schedule is None:
        return None
    data: dict[str, Any] = {}
    for name in schedule.model_fields_set:
        value = getattr(schedule, name)
        if value is None:
            continue
        data[name] = rfc3339(value) if isinstance(value, datetime) else value
    return data


def json_text(value: Any) -> str:
    """JSON-compatible `value` as compact JSON text, for the database to parse into jsonb."""
    return pydantic_core.to_json(value).decode()


def shared_or_each(column: tuple[Any, ...]) -> tuple[Any, ...]:
    """A column of a batch as `insert_tasks_batch` takes it: the one value when all rows share it
    (the usual batch differs only in ids), else every row's."""
    first = column[0]
    return (first,) if column.count(first) == len(column) else column


# ---------------------------------------------------------------------------------------------
# Reads


async def get_task(db: DB, task_id: str | uuid.UUID) -> dict[str, Any]:
    """The task with its newest run as `last_run`; NotFound if there is none."""
    tid = parse_id(task_id)
    row = await db.fetchrow(QUERIES["get_task"], tid)
    if row is None:
        raise NotFound(f"no task {str(task_id)!r}")
    return task_dict(row)


async def list_tasks(
    db: DB,
    *,
    before: uuid.UUID,
    limit: int,
    status: str | None = None,
    task_type: str | None = None,
    name: str | None = None,
) -> list[dict[str, Any]]:
    """Up to `limit` tasks with ids below `before`, newest first, filtered by the filters given
    (they combine). Each call reads index ranges in id order: the primary key, or one range per
    (status, type) pair that matches (about 30 pairs at most), never the tasks the filters leave
    out."""
    query, args = list_tasks_query(status, task_type, name)
    rows = await db.fetch(QUERIES[query], before, limit, *args)
    return [task_dict(row) for row in rows]


def list_tasks_query(
    status: str | None, task_type: str | None, name: str | None
) -> tuple[str, tuple[str | None, ...]]:
    """The listing query for these filters and its arguments after `before` and `limit`."""
    if name is not None:
        return "list_tasks_by_name", (name, status, task_type)
    if status is not None or task_type is not None:
        return "list_tasks_by_status_type", (status, task_type)
    return "list_tasks", ()


async def list_runs(
    db: DB, task_id: str | uuid.UUID, *, before: uuid.UUID, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` runs of the task with ids below `before`, newest first; NotFound when there is
    no such task."""
    tid = parse_id(task_id)
    if not await db.fetchval(QUERIES["task_exists"], tid):
        raise NotFound(f"no task {str(task_id)!r}")
    return [run_dict(row) for row in await db.fetch(QUERIES["list_runs"], tid, before, limit)]


async def get_run(db: DB, run_id: str | uuid.UUID) -> dict[str, Any]:
    """One run; NotFound if there is none."""
    rid = parse_id(run_id, "run")
    row = await db.fetchrow(QUERIES["get_run"], rid)
    if row is None:
        raise NotFound(f"no run {str(run_id)!r}")
    return run_dict(row)


async def run_status(db: DB, run_id: uuid.UUID) -> str | None:
    """The run's status; None when there is no such run (any more)."""
    status: str | None = await db.fetchval(QUERIES["run_status"], run_id)
    return status


async def list_logs(db: DB, run_id: uuid.UUID, *, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
    """Up to `limit` log lines of the run with ids above `after`, oldest first, each with its id
    (the key a next read continues after)."""
    rows = await db.fetch(QUERIES["list_logs"], run_id, after, limit)
    return [(row["id"], log_dict(row)) for row in rows]


async def list_workers(db: DB) -> list[dict[str, Any]]:
    """Every known worker (including `gone` ones, until cleaned up), by id."""
    return [worker_dict(row) for row in await db.fetch(QUERIES["list_workers"])]


# ---------------------------------------------------------------------------------------------
# New tasks


async def insert_task(db: DB, task: NewTask, *, notify: bool) -> dict[str, Any] | None:
    """Insert `task` with a new id, and NOTIFY `zephyr_tasks` with its `next_run_at` in the same
    statement when `notify` (else the caller tells coordinators once this has committed). The
    task as created, or None when its idempotency key exists already."""
    row = await db.fetchrow(
        QUERIES["insert_task"], new_id(), *task, rfc3339(task.next_run_at) if notify else None
    )
    return None if row is None else task_dict(row)


async def get_task_by_idempotency_key(db: DB, key: str | None) -> dict[str, Any] | None:
    """The task that holds idempotency key `key`, or None."""
    row = await db.fetchrow(QUERIES["get_task_by_idempotency_key"], key)
    return None if row is None else task_dict(row)


async def insert_batch(db: DB, tasks: Sequence[NewTask]) -> list[tuple[uuid.UUID | None, bool]]:
    """Insert all `tasks` in one statement (all or none) that NOTIFYs `zephyr_tasks` with their
    earliest `next_run_at`. For each task in input order: (its id, whether this created it); for a
    repeated idempotency key the id of the task that has it, or None when that task committed
    while this statement ran (`get_task_by_idempotency_key` finds it then)."""
    columns = [shared_or_each(column) for column in zip(*tasks, strict=True)]
    rows = await db.fetch(QUERIES["insert_tasks_batch"], new_ids(len(tasks)), *columns)
    return [(row["id"], row["created"]) for row in rows]


# ---------------------------------------------------------------------------------------------
# State changes


async def lock_task(conn: asyncpg.Connection, task_id: str | uuid.UUID) -> asyncpg.Record:
    """Lock the task's row for the rest of the transaction; NotFound when there is none."""
    row = await conn.fetchrow(QUERIES["lock_task"], parse_id(task_id))
    if row is None:
        raise NotFound(f"no task {str(task_id)!r}")
    return row


async def notify_due(conn: asyncpg.Connection, next_run_at: datetime | None) -> None:
    """Tell coordinators that something may be due at `next_run_at` (in this transaction)."""
    await conn.execute(QUERIES["notify_tasks"], rfc3339(next_run_at) or "")


async def cancel_task(db: DB, task_id: str | uuid.UUID) -> dict[str, Any]:
    """pending/paused/running -> cancelled; running runs get a `zephyr_cancel` notification each,
    so the coordinator holding the worker stops them. Locks the task only, never its runs (the
    lock order of docs/design.md). A terminal task (succeeded, dead, cancelled) raises Conflict."""
    async with locked_task(db, task_id) as (conn, row):
        if row["status"] in TERMINAL_TASK_STATUSES:
            raise Conflict(
                f"the task is {row['status']}; only pending, paused or running tasks can be cancelled"
            )
        await conn.execute(QUERIES["set_task_cancelled"], row["id"])
        await conn.fetch(QUERIES["request_run_cancels"], row["id"])
        return await get_task(conn, row["id"])


async def retry_task(db: DB, task_id: str | uuid.UUID) -> dict[str, Any]:
    """dead -> pending, due now, attempts reset to 0. Any other status raises Conflict."""
    async with locked_task(db, task_id) as (conn, row):
        if row["status"] != "dead":
            raise Conflict(f"the task is {row['status']}; only dead tasks can be retried")
        next_run_at = await conn.fetchval(QUERIES["set_task_retried"], row["id"])
        await notify_due(conn, next_run_at)
        return await get_task(conn, row["id"])


async def pause_task(db: DB, task_id: str | uuid.UUID) -> dict[str, Any]:
    """pending -> paused (not dispatched until resumed); paused stays paused. Others: Conflict."""
    async with locked_task(db, task_id) as (conn, row):
        if row["status"] == "pending":
            await conn.execute(QUERIES["set_task_paused"], row["id"])
        elif row["status"] != "paused":
            raise Conflict(f"the task is {row['status']}; only pending tasks can be paused")
        return await get_task(conn, row["id"])


async def resume_task(db: DB, task_id: str | uuid.UUID) -> dict[str, Any]:
    """paused -> pending (due at once if its time has passed); pending stays. Others: Conflict."""
    async with locked_task(db, task_id) as (conn, row):
        if row["status"] == "paused":
            next_run_at = await conn.fetchval(QUERIES["set_task_resumed"], row["id"])
            await notify_due(conn, next_run_at)
        elif row["status"] == "pending":
            await notify_due(conn, row["next_run_at"])  # held pending: claims skipped it
        else:
            raise Conflict(f"the task is {row['status']}; only paused tasks can be resumed")
        return await get_task(conn, row["id"])


async def patch_task(
    db: DB,
    task_id: str | uuid.UUID,
    *,
    payload: dict[str, Any] | None,
    priority: int | None,
    max_attempts: int | None,
    schedule_given: bool,
    stored_schedule: dict[str, Any] | None,
    next_run_at: datetime | None,
) -> dict[str, Any]:
    """Replace the fields given (None: unchanged), in stored form; with `schedule_given` the
    schedule becomes `stored_schedule` and a pending or paused task's next firing `next_run_at`
    (coordinators are told whenever the task is pending). A running task raises Conflict."""
    async with locked_task(db, task_id) as (conn, row):
        if row["status"] == "running":
            raise Conflict("the task is running; change it once its run has ended")
        updated = await conn.fetchrow(
            QUERIES["patch_task"],
            row["id"],
            payload,
            priority,
            max_attempts,
            schedule_given,
            stored_schedule,
            schedule.is_recurring(stored_schedule),
            schedule.wants_overlap(stored_schedule),
            next_run_at,
        )
        if updated["status"] == "pending":
            # Also without a new schedule: while this transaction held the row, a claim skipped
            # it (SKIP LOCKED); told nothing, coordinators would find it due only at their poll.
            await notify_due(conn, updated["next_run_at"])
        return await get_task(conn, row["id"])


async def drain_worker(db: DB, worker_id: str) -> dict[str, Any]:
    """A live worker -> `draining`, and `zephyr_drain` notified in the same transaction so the
    coordinator holding its stream sends Drain. NotFound for an unknown or gone worker."""
    async with transaction(db) as conn:
        row = await conn.fetchrow(QUERIES["set_worker_draining"], worker_id)
        if row is None:
            raise NotFound(f"no live worker {worker_id!r}")
        await conn.execute(QUERIES["notify_drain"], worker_id)
    return worker_dict(row)
