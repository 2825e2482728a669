"""POST /v1/tasks/batch and idempotency: one statement, all or nothing, ids in order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.support.api_server import Api, running_api
from zephyr.db.pool import connect


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as api:
        yield api


def internal(n: int, **extra: Any) -> dict[str, Any]:
    return {"type": "internal", "name": f"t{n}", "payload": {"function": "zephyr.noop", "args": [n]}, **extra}


async def count(api: Api) -> int:
    value: int = await api.pool.fetchval("SELECT count(*) FROM tasks")
    return value


async def test_batch_of_1000_creates_all_in_order_with_one_notification(api: Api, database_url: str) -> None:
    listener = await connect(database_url)
    notes: list[str] = []
    await listener.add_listener("zephyr_tasks", lambda *args: notes.append(args[3]))
    try:
        tasks = [internal(n, schedule={"delay_s": 1000 - n}) for n in range(1000)]
        status, body = await api.call("POST", "/v1/tasks/batch", json={"tasks": tasks})
        assert status == 201, body
        ids = body["ids"]
        assert len(ids) == 1000 and len(set(ids)) == 1000
        rows = await api.pool.fetch("SELECT id, name, payload, next_run_at FROM tasks")
        by_id = {str(row["id"]): row for row in rows}
        assert [by_id[i]["name"] for i in ids] == [f"t{n}" for n in range(1000)]
        assert [by_id[i]["payload"]["args"] for i in ids] == [[n] for n in range(1000)]
        # one NOTIFY for the whole batch, carrying the earliest next_run_at (the last task's)
        await listener.execute("SELECT 1")  # a round trip delivers pending notifications
        assert len(notes) == 1
        earliest = min(row["next_run_at"] for row in rows)
        assert notes[0] == earliest.isoformat(timespec="microseconds").replace("+00:00", "Z")
    finally:
        await listener.close()


async def test_batch_rows_get_their_own_values_whether_shared_or_not(api: Api) -> None:
    # The statement takes a column all rows share as one value: mix shared and differing ones.
    tasks: list[dict[str, Any]] = [
        {"type": "internal", "payload": {"function": "zephyr.noop"}, "priority": 1} for _ in range(5)
    ]
    tasks[4] = {**tasks[4], "priority": 2, "idempotency_key": "own", "max_attempts": 7}
    tasks[2] = {**tasks[2], "schedule": {"every_s": 60}, "timeout_s": 9}
    status, body = await api.call("POST", "/v1/tasks/batch", json={"tasks": tasks})
    assert status == 201, body
    rows = {str(row["id"]): row for row in await api.pool.fetch("SELECT * FROM tasks")}
    got = [rows[task_id] for task_id in body["ids"]]
    assert [row["priority"] for row in got] == [1, 1, 1, 1, 2]
    assert [row["idempotency_key"] for row in got] == [None, None, None, None, "own"]
    assert [row["max_attempts"] for row in got] == [3, 3, 3, 3, 7]
    assert [row["timeout_s"] for row in got] == [300.0, 300.0, 9.0, 300.0, 300.0]
    assert [row["schedule"] for row in got] == [None, None, {"every_s": 60.0}, None, None]
    assert [row["recurring"] for row in got] == [False, False, True, False, False]
    assert all(row["payload"] == {"function": "zephyr.noop"} and row["type"] == "internal" for row in got)
    assert len({row["next_run_at"] for row in got}) == 2  # the same now, and a minute later


async def test_batch_with_one_bad_task_creates_nothing_and_names_it(api: Api) -> None:
    tasks = [internal(n) for n in range(30)]
    tasks[17]["schedule"] = {"cron": "61 * * * *"}
    status, body = await api.call("POST", "/v1/tasks/batch", json={"tasks": tasks})
    assert status == 400
    assert body["error"]["code"] == "invalid_schedule"
    assert body["error"]["field"] == "tasks[17].schedule.cron"
    assert await count(api) == 0


async def test_batch_failing_in_the_database_creates_nothing(api: Api) -> None:
    # A row the database refuses halfway through (priority beyond int4 cannot pass validation,
    # so break the table instead): nothing of the batch may remain.
    await api.pool.execute("ALTER TABLE tasks ADD CONSTRAINT no_t5 CHECK (name <> 't5')")
    status, body = await api.call("POST", "/v1/tasks/batch", json={"tasks": [internal(n) for n in range(10)]})
    assert status == 500, body
    assert await count(api) == 0


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"tasks": []}, 400, "tasks"),
        ({"tasks": {}}, 400, "tasks"),
        ({}, 400, "tasks"),
        ({"tasks": [internal(0)], "extra": 1}, 400, "extra"),
        # maxItems in /openapi.json: 400 like any schema-invalid body (413 is for the body's bytes)
        ({"tasks": [internal(n) for n in range(1001)]}, 400, "tasks"),
        ({"tasks": [internal(0), {"type": "internal"}]}, 400, "tasks[1].payload"),
        ({"tasks": [internal(0), "x"]}, 400, "tasks[1]"),
        ({"tasks": [internal(0), internal(1, bogus=True)]}, 400, "tasks[1].bogus"),
        # Each task fits /openapi.json, which cannot say keys differ across items: 409 (schemathesis)
        ({"tasks": [internal(0, idempotency_key="k"), internal(1, idempotency_key="k")]}, 409,
         "tasks[1].idempotency_key"),
    ],
)  # fmt: skip
async def test_batch_errors(api: Api, body: Any, status: int, field: str) -> None:
    got_status, got = await api.call("POST", "/v1/tasks/batch", json=body)
    assert got_status == status, got
    assert got["error"]["field"] == field
    assert await count(api) == 0


async def test_batch_repeated_idempotency_key_returns_the_existing_id(api: Api) -> None:
    status, first = await api.call("POST", "/v1/tasks", json=internal(0, idempotency_key="same"))
    assert status == 201
    status, body = await api.call(
        "POST",
        "/v1/tasks/batch",
        json={"tasks": [internal(1), internal(2, idempotency_key="same"), internal(3)]},
    )
    assert status == 201
    assert body["ids"][1] == first["id"]
    assert await count(api) == 3


async def test_batch_counts_the_tasks_it_created_by_type(api: Api) -> None:
    def submitted(task_type: str) -> float:
        return REGISTRY.get_sample_value("zephyr_tasks_submitted_total", {"type": task_type}) or 0.0

    status, _ = await api.call("POST", "/v1/tasks", json=internal(0, idempotency_key="seen"))
    assert status == 201
    before = {task_type: submitted(task_type) for task_type in ("internal", "http")}
    http = {"type": "http", "payload": {"url": "http://127.0.0.1:9/"}}
    tasks = [internal(1), http, internal(2, idempotency_key="seen"), internal(3), http]
    status, _ = await api.call("POST", "/v1/tasks/batch", json={"tasks": tasks})
    assert status == 201
    assert submitted("internal") - before["internal"] == 2  # not the repeated key
    assert submitted("http") - before["http"] == 2


async def test_idempotency_key_field_and_header(api: Api) -> None:
    status, first = await api.call("POST", "/v1/tasks", json=internal(0, idempotency_key="k1"))
    assert status == 201
    status, again = await api.call("POST", "/v1/tasks", json=internal(99, idempotency_key="k1"))
    assert status == 200
    assert again["id"] == first["id"] and again["name"] == "t0"

    status, by_header = await api.call(
        "POST", "/v1/tasks", json=internal(1), headers={"Idempotency-Key": "h1"}
    )
    assert status == 201
    assert by_header["idempotency_key"] == "h1"
    status, again = await api.call("POST", "/v1/tasks", json=internal(1), headers={"Idempotency-Key": "h1"})
    assert status == 200 and again["id"] == by_header["id"]
    assert await count(api) == 2


async def test_concurrent_repeats_make_one_task(api: Api) -> None:
    key = f"race-{uuid.uuid4()}"
    results = await asyncio.gather(
        *(
            api.call("POST", "/v1/tasks", json=internal(n), headers={"Idempotency-Key": key})
            for n in range(40)
        )
    )
    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 1 and statuses.count(200) == 39
    assert len({body["id"] for _, body in results}) == 1
    assert await count(api) == 1


async def test_batch_repeated_with_the_same_idempotency_key_header_creates_nothing_new(api: Api) -> None:
    tasks = [internal(0), internal(1, idempotency_key="own"), internal(2)]
    headers = {"Idempotency-Key": "batch-7"}
    status, first = await api.call("POST", "/v1/tasks/batch", json={"tasks": tasks}, headers=headers)
    assert status == 201
    status, again = await api.call("POST", "/v1/tasks/batch", json={"tasks": tasks}, headers=headers)
    assert status == 201 and again["ids"] == first["ids"]
    assert await count(api) == 3
    keys = await api.pool.fetch("SELECT idempotency_key FROM tasks ORDER BY name")
    assert [row["idempotency_key"] for row in keys] == ["batch-7#0", "own", "batch-7#2"]
