"""PATCH, cancel, retry, pause and resume: the state machine, its 409s and its notifications."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.api_server import Api, running_api
from zephyr.db.pool import connect
from zephyr.ids import new_id

TASK = {"type": "internal", "payload": {"function": "zephyr.noop"}, "schedule": {"delay_s": 3600}}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as api:
        yield api


class Listener:
    """A real LISTEN connection collecting notifications of one channel."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.got: asyncio.Queue[str] = asyncio.Queue()

    async def __aenter__(self) -> Listener:
        return self

    async def start(self, database_url: str) -> Listener:
        self.conn = await connect(database_url)
        await self.conn.add_listener(self.channel, lambda *args: self.got.put_nowait(args[3]))
        return self

    async def next(self) -> str:
        return await asyncio.wait_for(self.got.get(), 10)

    async def close(self) -> None:
        await self.conn.close()


async def create(api: Api, **extra: Any) -> dict[str, Any]:
    status, task = await api.call("POST", "/v1/tasks", json={**TASK, **extra})
    assert status == 201, task
    task.pop("warnings", None)  # no worker runs here: the create's answer warns, task reads do not
    created: dict[str, Any] = task
    return created


async def set_status(api: Api, task_id: str, status: str) -> None:
    await api.pool.execute("UPDATE tasks SET status = $2 WHERE id = $1", uuid.UUID(task_id), status)


async def add_run(api: Api, task_id: str, status: str = "running") -> uuid.UUID:
    run_id = new_id()
    await api.pool.execute(
        "INSERT INTO task_runs (id, task_id, attempt, status, worker_id, coordinator_id, scheduled_for,"
        " deadline_at, finished_at) VALUES ($1, $2, 1, $3, 'w1', 'c1', now(), now() + interval '1 minute',"
        " CASE WHEN $3 = 'running' THEN NULL ELSE now() END)",
        run_id,
        uuid.UUID(task_id),
        status,
    )
    return run_id


async def test_cancel_pending_task(api: Api) -> None:
    task = await create(api)
    status, body = await api.call("POST", f"/v1/tasks/{task['id']}/cancel")
    assert status == 200
    assert body["status"] == "cancelled" and body["next_run_at"] is None


async def test_cancel_running_task_notifies_its_running_run(api: Api, database_url: str) -> None:
    task = await create(api)
    await set_status(api, task["id"], "running")
    run_id = await add_run(api, task["id"])
    await add_run(api, task["id"], "failed")
    listener = await Listener("zephyr_cancel").start(database_url)
    try:
        status, body = await api.call("POST", f"/v1/tasks/{task['id']}/cancel")
        assert status == 200 and body["status"] == "cancelled"
        assert await listener.next() == str(run_id)
        assert listener.got.empty()  # not the finished run
    finally:
        await listener.close()


@pytest.mark.parametrize("terminal", ["succeeded", "dead", "cancelled"])
async def test_cancel_terminal_task_is_409(api: Api, terminal: str) -> None:
    task = await create(api)
    await set_status(api, task["id"], terminal)
    status, body = await api.call("POST", f"/v1/tasks/{task['id']}/cancel")
    assert status == 409
    assert body["error"]["code"] == "conflict"


async def test_retry_dead_task_resets_attempts_and_notifies(api: Api, database_url: str) -> None:
    task = await create(api)
    await api.pool.execute(
        "UPDATE tasks SET status = 'dead', attempts = 3, next_run_at = NULL WHERE id = $1",
        uuid.UUID(task["id"]),
    )
    listener = await Listener("zephyr_tasks").start(database_url)
    try:
        before = datetime.now(UTC) - timedelta(seconds=1)
        status, body = await api.call("POST", f"/v1/tasks/{task['id']}/retry")
        assert status == 200, body
        assert (body["status"], body["attempts"]) == ("pending", 0)
        assert datetime.fromisoformat(body["next_run_at"]) >= before
        assert await listener.next() == body["next_run_at"]
    finally:
        await listener.close()


@pytest.mark.parametrize("other", ["pending", "running", "succeeded", "cancelled", "paused"])
async def test_retry_anything_but_dead_is_409(api: Api, other: str) -> None:
    task = await create(api)
    await set_status(api, task["id"], other)
    status, _ = await api.call("POST", f"/v1/tasks/{task['id']}/retry")
    assert status == 409


async def test_pause_and_resume(api: Api, database_url: str) -> None:
    task = await create(api)
    status, body = await api.call("POST", f"/v1/tasks/{task['id']}/pause")
    assert status == 200 and body["status"] == "paused"
    assert body["next_run_at"] == task["next_run_at"]
    assert (await api.call("POST", f"/v1/tasks/{task['id']}/pause"))[0] == 200  # idempotent
    listener = await Listener("zephyr_tasks").start(database_url)
    try:
        status, body = await api.call("POST", f"/v1/tasks/{task['id']}/resume")
        assert status == 200 and body["status"] == "pending"
        assert await listener.next() == task["next_run_at"]
    finally:
        await listener.close()


@pytest.mark.parametrize("other", ["running", "succeeded", "dead", "cancelled"])
async def test_pause_and_resume_conflicts(api: Api, other: str) -> None:
    task = await create(api)
    await set_status(api, task["id"], other)
    assert (await api.call("POST", f"/v1/tasks/{task['id']}/pause"))[0] == 409
    assert (await api.call("POST", f"/v1/tasks/{task['id']}/resume"))[0] == 409


@pytest.mark.parametrize("action", ["cancel", "retry", "pause", "resume"])
async def test_actions_on_unknown_task_are_404(api: Api, action: str) -> None:
    status, body = await api.call("POST", f"/v1/tasks/{uuid.uuid4()}/{action}")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_patch_changes_fields_and_recomputes_schedule(api: Api, database_url: str) -> None:
    task = await create(api)
    listener = await Listener("zephyr_tasks").start(database_url)
    try:
        status, body = await api.call(
            "PATCH",
            f"/v1/tasks/{task['id']}",
            json={
                "priority": 7,
                "max_attempts": 9,
                "payload": {"function": "zephyr.echo", "kwargs": {"a": 1}},
                "schedule": {"every_s": 60, "overlap": True},
            },
        )
        assert status == 200, body
        assert (body["priority"], body["max_attempts"]) == (7, 9)
        assert body["payload"] == {"function": "zephyr.echo", "kwargs": {"a": 1}}
        assert body["schedule"] == {"every_s": 60, "overlap": True}
        assert await listener.next() == body["next_run_at"]
        row = await api.pool.fetchrow(
            "SELECT recurring, overlap FROM tasks WHERE id = $1", uuid.UUID(task["id"])
        )
        assert (row["recurring"], row["overlap"]) == (True, True)
    finally:
        await listener.close()
    # schedule: null means run now; absent fields stay
    status, body = await api.call("PATCH", f"/v1/tasks/{task['id']}", json={"schedule": None})
    assert status == 200
    assert body["schedule"] is None and body["priority"] == 7
    assert datetime.fromisoformat(body["next_run_at"]) <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("patch", "status", "field"),
    [
        ({"payload": {"function": "bad name"}}, 400, "payload.function"),
        ({"payload": {"function": "a.b", "url": "http://x"}}, 400, "payload.url"),
        ({"schedule": {"cron": "* * *"}}, 400, "schedule.cron"),
        ({"max_attempts": 0}, 400, "max_attempts"),
        ({"name": "renamed"}, 400, "name"),
        ({"status": "succeeded"}, 400, "status"),
    ],
)
async def test_patch_errors(api: Api, patch: dict[str, Any], status: int, field: str) -> None:
    task = await create(api)
    got_status, body = await api.call("PATCH", f"/v1/tasks/{task['id']}", json=patch)
    assert got_status == status, body
    assert body["error"]["field"] == field
    status, unchanged = await api.call("GET", f"/v1/tasks/{task['id']}")
    assert unchanged == task


async def test_patch_running_task_is_409_and_unknown_is_404(api: Api) -> None:
    task = await create(api)
    await set_status(api, task["id"], "running")
    status, body = await api.call("PATCH", f"/v1/tasks/{task['id']}", json={"priority": 1})
    assert status == 409, body
    status, _ = await api.call("PATCH", f"/v1/tasks/{uuid.uuid4()}", json={"priority": 1})
    assert status == 404
