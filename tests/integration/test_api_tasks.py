"""POST /v1/tasks and GET /v1/tasks/{id} against a real PostgreSQL over real HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support.api_server import Api, running_api
from zephyr.db.pool import connect
from zephyr.ids import new_id
from zephyr.scheduler.http import OFFERED_TYPES

HTTP_TASK = {"type": "http", "payload": {"method": "GET", "url": "http://127.0.0.1:9/"}}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as api:
        yield api


def parse(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


async def test_create_returns_the_task_in_spec_shape(api: Api) -> None:
    before = datetime.now(UTC)
    status, task = await api.call("POST", "/v1/tasks", json={**HTTP_TASK, "name": "hello"})
    assert status == 201, task
    assert set(task) >= {
        "id", "name", "type", "payload", "schedule", "status", "priority", "max_attempts", "attempts",
        "timeout_s", "next_run_at", "created_at", "updated_at", "last_run",
    }  # fmt: skip
    assert task["name"] == "hello"
    assert task["status"] == "pending"
    assert (task["priority"], task["max_attempts"], task["timeout_s"]) == (0, 3, 300)
    assert task["attempts"] == 0
    assert task["schedule"] is None
    assert task["last_run"] is None
    assert task["payload"] == HTTP_TASK["payload"]
    assert before - timedelta(seconds=1) <= parse(task["next_run_at"]) <= datetime.now(UTC)

    status, again = await api.call("GET", f"/v1/tasks/{task['id']}")
    assert status == 200
    warnings = task.pop("warnings")  # only in the create's answer: no worker offers http here
    assert [w["code"] for w in warnings] == ["no_worker_for_type"]
    assert again == task


async def test_create_warns_when_no_active_worker_offers_the_type(api: Api) -> None:
    shell = {"type": "shell", "payload": {"command": "true"}}
    status, task = await api.call("POST", "/v1/tasks", json=shell)
    assert status == 201 and task["status"] == "pending"  # kept: it waits for a shell worker
    assert task["warnings"] == [
        {
            "code": "no_worker_for_type",
            "field": "type",
            "message": "no active worker offers 'shell' tasks: the task waits until one does",
        }
    ]
    await api.pool.execute(
        "INSERT INTO workers (id, host, capacity, task_types, lease_expires_at)"
        " VALUES ('w', 'h', 1, '{http}', now() + interval '1 minute')"
    )
    api.app[OFFERED_TYPES].expire()  # read anew, not up to 2 s later
    status, task = await api.call("POST", "/v1/tasks", json=HTTP_TASK)
    assert status == 201 and "warnings" not in task
    status, body = await api.call("POST", "/v1/tasks/batch", json={"tasks": [HTTP_TASK, shell, shell]})
    assert status == 201 and len(body["ids"]) == 3
    assert [(w["code"], w["field"]) for w in body["warnings"]] == [("no_worker_for_type", "tasks[1].type")]


@pytest.mark.parametrize(
    ("schedule", "recurring", "overlap"),
    [
        ({"at": "2030-01-02T03:04:05Z"}, False, False),
        ({"at": "2030-01-02T04:04:05+01:00"}, False, False),
        ({"delay_s": 3600}, False, False),
        ({"cron": "0 9 * * *", "timezone": "Europe/Paris"}, True, False),
        ({"every_s": 600, "overlap": True}, True, True),
    ],
)
async def test_schedule_sets_next_run_at_and_flags(
    api: Api, schedule: dict[str, object], recurring: bool, overlap: bool
) -> None:
    now = datetime.now(UTC)
    status, task = await api.call("POST", "/v1/tasks", json={**HTTP_TASK, "schedule": schedule})
    assert status == 201, task
    next_run_at = parse(task["next_run_at"])
    if "at" in schedule:
        assert next_run_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert task["schedule"] == {"at": "2030-01-02T03:04:05Z"}
    elif "delay_s" in schedule:
        assert timedelta(seconds=3590) < next_run_at - now < timedelta(seconds=3610)
    elif "cron" in schedule:
        local = next_run_at.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
        assert (local.hour, local.minute) == (9, 0)
        assert now < next_run_at <= now + timedelta(days=1)
    else:
        assert timedelta(seconds=590) < next_run_at - now < timedelta(seconds=610)
    row = await api.pool.fetchrow("SELECT recurring, overlap FROM tasks WHERE id = $1", uuid.UUID(task["id"]))
    assert (row["recurring"], row["overlap"]) == (recurring, overlap)


async def test_insert_notifies_coordinators_with_next_run_at(api: Api, database_url: str) -> None:
    listener = await connect(database_url)
    got: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("zephyr_tasks", lambda *args: got.put_nowait(args[3]))
    try:
        status, _ = await api.call(
            "POST", "/v1/tasks", json={**HTTP_TASK, "schedule": {"at": "2031-05-06T07:08:09Z"}}
        )
        assert status == 201
        payload = await asyncio.wait_for(got.get(), 10)
        assert parse(payload) == datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    finally:
        await listener.close()


async def test_get_shows_the_newest_run_as_last_run(api: Api) -> None:
    _, task = await api.call("POST", "/v1/tasks", json=HTTP_TASK)
    task_id = uuid.UUID(task["id"])
    older, newer = sorted([new_id(), new_id()])  # ids within one millisecond order randomly
    for run_id, attempt, status in ((older, 1, "failed"), (newer, 2, "running")):
        await api.pool.execute(
            "INSERT INTO task_runs (id, task_id, attempt, status, worker_id, coordinator_id, scheduled_for,"
            " deadline_at, finished_at) VALUES ($1, $2, $3, $4, 'w1', 'c1', now(), now() + interval '1 minute',"
            " CASE WHEN $4 = 'running' THEN NULL ELSE now() END)",
            run_id,
            task_id,
            attempt,
            status,
        )
    code, got = await api.call("GET", f"/v1/tasks/{task_id}")
    assert code == 200
    last = got["last_run"]
    assert last["id"] == str(newer)
    assert (last["attempt"], last["status"], last["worker_id"], last["task_id"]) == (
        2,
        "running",
        "w1",
        str(task_id),
    )
    assert last["started_at"].endswith("Z") and last["finished_at"] is None
    assert set(last) >= {"id", "task_id", "attempt", "status", "worker_id", "scheduled_for", "started_at",
                         "finished_at", "result", "error"}  # fmt: skip


@pytest.mark.parametrize("task_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_unknown_task_is_404_in_error_shape(api: Api, task_id: str) -> None:
    status, body = await api.call("GET", f"/v1/tasks/{task_id}")
    assert status == 404
    assert body["error"]["code"] == "not_found"


async def test_health_ready_and_metrics(api: Api) -> None:
    assert await api.call("GET", "/healthz") == (200, {"status": "ok"})
    assert (await api.call("GET", "/readyz"))[0] == 200
    await api.call("POST", "/v1/tasks", json=HTTP_TASK)
    async with api.session.get(api.url("/metrics")) as resp:
        text = await resp.text()
    assert resp.status == 200
    assert 'zephyr_tasks_submitted_total{type="http"}' in text
    assert 'zephyr_http_requests_total{method="POST",route="/v1/tasks",status="201"}' in text


async def test_readyz_is_503_when_the_database_is_gone(database_url: str, pg_admin_dsn: str) -> None:
    async with running_api(database_url) as api:
        assert (await api.call("GET", "/readyz"))[0] == 200
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            name = urlsplit(database_url).path.lstrip("/")
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            status, body = await api.call("GET", "/readyz")
            assert status == 503, body
            # The database's own words (its name, the user, the host) stay in the server's log.
            assert body["error"] == {"code": "unavailable", "message": "the database is not reachable"}
            assert name not in json.dumps(body)
            status, body = await api.call("POST", "/v1/tasks", json=HTTP_TASK)
            assert status == 503, body
            assert body["error"]["code"] == "unavailable"
            assert (await api.call("GET", "/healthz"))[0] == 200
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()
