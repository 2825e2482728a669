"""zephyr.v1.Admin: the operator API, a thin gRPC face over `zephyr.taskstore`.

Errors map through `zephyr.errors` (NotFound -> NOT_FOUND, Conflict -> FAILED_PRECONDITION).
DrainWorker marks the worker `draining` and notifies `zephyr_drain`, so whichever coordinator
holds the worker's stream sends it Drain.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import grpc
from google.protobuf import struct_pb2

from zephyr import stats as cluster_stats
from zephyr import taskstore
from zephyr.db.pool import DB_ERRORS
from zephyr.errors import NotFound, ZephyrError
from zephyr.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]


def _struct(value: Any) -> struct_pb2.Struct | None:
    if not isinstance(value, Mapping):
        return None
    message = struct_pb2.Struct()
    message.update(value)
    return message


def task_info(task: Mapping[str, Any]) -> admin_pb2.TaskInfo:
    """SPEC's task dict (from taskstore) as TaskInfo."""
    return admin_pb2.TaskInfo(
        id=task["id"],
        name=task["name"],
        type=task["type"],
        status=task["status"],
        priority=task["priority"],
        max_attempts=task["max_attempts"],
        attempts=task["attempts"],
        timeout_s=task["timeout_s"],
        next_run_at=task["next_run_at"] or "",
        created_at=task["created_at"] or "",
        updated_at=task["updated_at"] or "",
        payload=_struct(task["payload"]),
        schedule=_struct(task["schedule"]),
        traceparent=task["traceparent"] or "",
    )


def worker_info(worker: Mapping[str, Any]) -> admin_pb2.WorkerInfo:
    """SPEC's worker dict (from taskstore) as WorkerInfo."""
    return admin_pb2.WorkerInfo(
        id=worker["id"],
        host=worker["host"],
        capacity=worker["capacity"],
        running=worker["running"],
        status=worker["status"],
        task_types=worker["task_types"],
        last_heartbeat_at=worker["last_heartbeat_at"] or "",
        coordinator_id=worker.get("coordinator_id") or "",
        load=worker.get("load") or 0.0,
    )


class Admin(admin_pb2_grpc.AdminServicer):
    """Admin service over the coordinator's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _call(self, context: Context, op: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await op()
        except ZephyrError as exc:
            await context.abort(exc.grpc_status, exc.message)
        except DB_ERRORS as exc:
            log.warning("admin call failed: %s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable")

    async def ListWorkers(
        self, request: admin_pb2.ListWorkersRequest, context: Context
    ) -> admin_pb2.ListWorkersResponse:
        workers = await self._call(context, lambda: taskstore.list_workers(self._pool))
        return admin_pb2.ListWorkersResponse(workers=[worker_info(w) for w in workers])

    async def DrainWorker(
        self, request: admin_pb2.DrainWorkerRequest, context: Context
    ) -> admin_pb2.WorkerInfo:
        async def drain() -> dict[str, Any]:
            if not request.worker_id:
                raise NotFound("worker_id: required")
            return await taskstore.drain_worker(self._pool, request.worker_id)

        return worker_info(await self._call(context, drain))

    async def GetTask(self, request: admin_pb2.TaskRequest, context: Context) -> admin_pb2.TaskInfo:
        return task_info(await self._call(context, lambda: taskstore.get_task(self._pool, request.id)))

    async def CancelTask(self, request: admin_pb2.TaskRequest, context: Context) -> admin_pb2.TaskInfo:
        return task_info(await self._call(context, lambda: taskstore.cancel_task(self._pool, request.id)))

    async def RetryTask(self, request: admin_pb2.TaskRequest, context: Context) -> admin_pb2.TaskInfo:
        return task_info(await self._call(context, lambda: taskstore.retry_task(self._pool, request.id)))

    async def PauseTask(self, request: admin_pb2.TaskRequest, context: Context) -> admin_pb2.TaskInfo:
        return task_info(await self._call(context, lambda: taskstore.pause_task(self._pool, request.id)))

    async def ResumeTask(self, request: admin_pb2.TaskRequest, context: Context) -> admin_pb2.TaskInfo:
        return task_info(await self._call(context, lambda: taskstore.resume_task(self._pool, request.id)))

    async def Stats(self, request: admin_pb2.StatsRequest, context: Context) -> admin_pb2.StatsResponse:
        stats = await self._call(context, lambda: cluster_stats.stats(self._pool))
        return admin_pb2.StatsResponse(
            tasks=stats["tasks"],
            queue_depth=stats["queue_depth"],
            oldest_due_age_s=stats["oldest_due_age_s"],
            workers=stats["workers"],
            runs_per_s=stats["runs_per_s"],
            pending_by_type=stats["pending_by_type"],
            types_without_worker=stats["types_without_worker"],
            queue_depth_by_type=stats["queue_depth_by_type"],
            oldest_due_age_s_by_type=stats["oldest_due_age_s_by_type"],
            approximate=stats["approximate"],
        )
