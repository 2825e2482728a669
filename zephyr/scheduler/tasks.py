"""Handlers of `/v1/tasks...`: create (one or a batch), list, read, patch, and state changes."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from zephyr import taskstore
from zephyr.errors import Conflict, ValidationError
from zephyr.scheduler import cursors, params, submit
from zephyr.scheduler.http import INSERT_POOL, NOTIFIER, OFFERED_TYPES, POOL, read_json, respond
from zephyr.scheduler.schemas import (
    TASK_TYPES,
    check_text,
    validate_batch,
    validate_patch,
    validate_payload,
    validate_task,
)
from zephyr.scheduler.submit import first_run_at
from zephyr.scheduler.traces import submit_trace
from zephyr.taskstore import stored_payload, stored_schedule

routes = web.RouteTableDef()

IDEMPOTENCY_HEADER = "Idempotency-Key"
# `/v1/tasks/{id}` does not take `batch` as an id: that path is `POST /v1/tasks/batch`'s alone, so
# other methods there answer 405 with `Allow: POST` (not the methods of a task).
TASK_PATH = "/v1/tasks/{id:(?!batch$)[^/]+}"


def _idempotency_header(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None:
        if not 1 <= len(key) <= 240:
            raise ValidationError(
                "the Idempotency-Key header is 1 to 240 characters", field=IDEMPOTENCY_HEADER
            )
        check_text(key, IDEMPOTENCY_HEADER)
    return key


@routes.post("/v1/tasks")
async def create_task(request: web.Request) -> web.Response:
    """201 with the new task; 200 with the first task when its idempotency key was seen. With
    `warnings` when no active worker offers the task's type (it waits until one does) or when the
    `traceparent` header was ignored (zephyr.scheduler.traces)."""
    key = _idempotency_header(request)
    body = await read_json(request)
    task = validate_task(body)
    with submit_trace(request) as trace:
        row = submit.to_row(task, submit.utcnow(), idempotency_key=key, traceparent=trace.header)
        created, is_new = await submit.create_task(request.app[INSERT_POOL], row, request.app[NOTIFIER])
        trace.created([created["id"]], [row])
    offered = await request.app[OFFERED_TYPES].get(request.app[POOL])
    warnings = trace.warnings + submit.no_worker_warnings([row.type], offered, single=True)
    return respond({**created, "warnings": warnings} if warnings else created, status=201 if is_new else 200)


@routes.post("/v1/tasks/batch")
async def create_batch(request: web.Request) -> web.Response:
    """201 with `{"ids": [...]}` in input order; all tasks are created or none. With `warnings`
    (one per type, naming its first task) when no active worker offers a type of the batch.

    An `Idempotency-Key` header K gives each task without its own key the key `K#<index>`, so a
    client that repeats a whole batch (after a timeout) gets the same ids and no duplicates."""
    key = _idempotency_header(request)
    tasks = validate_batch(await read_json(request))
    now = submit.utcnow()
    with submit_trace(request) as trace:
        rows = [
            submit.to_row(
                task,
                now,
                f"tasks[{index}].",
                idempotency_key=None if task.idempotency_key or key is None else f"{key}#{index}",
                traceparent=trace.header,
            )
            for index, task in enumerate(tasks)
        ]
        ids = await submit.create_batch(request.app[POOL], rows)
        trace.created(ids, rows)
    offered = await request.app[OFFERED_TYPES].get(request.app[POOL])
    warnings = trace.warnings + submit.no_worker_warnings([row.type for row in rows], offered)
    return respond({"ids": ids, "warnings": warnings} if warnings else {"ids": ids}, status=201)


@routes.get("/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    """Newest first, `limit` (default 100, max 1000) per page, `next_cursor` null on the last page.
    Filters `status`, `type`, `name` combine; each page reads index ranges in page order
    (`taskstore.list_tasks`)."""
    status, task_type, name, limit, cursor = (param.read(request) for param in params.TASKS.values())
    before = cursors.decode_uuid("t", cursor)
    tasks = await taskstore.list_tasks(
        request.app[POOL], before=before, limit=limit + 1, status=status, task_type=task_type, name=name
    )
    page, next_cursor = cursors.page("t", tasks, limit, lambda task: task["id"])
    return respond({"tasks": page, "next_cursor": next_cursor})


@routes.get(TASK_PATH)
async def get_task(request: web.Request) -> web.Response:
    return respond(await taskstore.get_task(request.app[POOL], request.match_info["id"]))


@routes.patch(TASK_PATH)
async def patch_task(request: web.Request) -> web.Response:
    """Replace `schedule`, `payload`, `priority`, `max_attempts`; 409 while the task runs."""
    patch = validate_patch(await read_json(request))
    pool = request.app[POOL]
    current = await taskstore.get_task(pool, request.match_info["id"])
    payload: dict[str, Any] | None = None
    if patch.payload is not None:
        payload = _patched_payload(current["type"], patch.payload)
    schedule_given = "schedule" in patch.model_fields_set
    stored = stored_schedule(patch.schedule)
    next_run_at = first_run_at(stored, submit.utcnow()) if schedule_given else None
    return respond(
        await taskstore.patch_task(
            pool,
            current["id"],
            payload=payload,
            priority=patch.priority,
            max_attempts=patch.max_attempts,
            schedule_given=schedule_given,
            stored_schedule=stored,
            next_run_at=next_run_at,
        )
    )


def _patched_payload(task_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a new payload for a task of `task_type`. A payload that is valid, but
    for another type, conflicts with the task (409); one valid for no type is a bad request."""
    try:
        return stored_payload(validate_payload(task_type, payload))
    except ValidationError as exc:
        for other in TASK_TYPES:
            if other != task_type:
                with contextlib.suppress(ValidationError):
                    validate_payload(other, payload)
                    raise Conflict(
                        f"the payload is one of a `{other}` task; this task is `{task_type}`: {exc.message}",
                        field=exc.field,
                    ) from None
        raise


@routes.post("/v1/tasks/{id}/cancel")
async def cancel_task(request: web.Request) -> web.Response:
    return respond(await taskstore.cancel_task(request.app[POOL], request.match_info["id"]))


@routes.post("/v1/tasks/{id}/retry")
async def retry_task(request: web.Request) -> web.Response:
    return respond(await taskstore.retry_task(request.app[POOL], request.match_info["id"]))


@routes.post("/v1/tasks/{id}/pause")
async def pause_task(request: web.Request) -> web.Response:
    return respond(await taskstore.pause_task(request.app[POOL], request.match_info["id"]))


@routes.post("/v1/tasks/{id}/resume")
async def resume_task(request: web.Request) -> web.Response:
    return respond(await taskstore.resume_task(request.app[POOL], request.match_info["id"]))
