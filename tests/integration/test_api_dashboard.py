"""The API the dashboard needs: `POST /v1/workers/{id}/drain` and `GET /v1/stats/activity`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openapi_spec_validator import validate as validate_openapi

from tests.support.api_server import Api, running_api
from zephyr.db.pool import connect
from zephyr.ids import new_id

TOKEN = "dashboard-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url, ZEPHYR_API_TOKENS=TOKEN) as api:
        yield api


# ---------------------------------------------------------------------------------------------
# Drain


async def add_worker(api: Api, worker_id: str, status: str = "active") -> None:
    await api.pool.execute(
        "INSERT INTO workers (id, host, capacity, running, status, task_types, lease_expires_at)"
        " VALUES ($1, 'host-1', 8, 2, $2, '{shell,internal}', now() + interval '30 s')",
        worker_id,
        status,
    )


async def test_drain_marks_the_worker_and_notifies_its_coordinator(api: Api, database_url: str) -> None:
    await add_worker(api, "w-1")
    await add_worker(api, "w-2")
    listener = await connect(database_url)
    got: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("zephyr_drain", lambda *args: got.put_nowait(args[3]))
    try:
        status, worker = await api.call("POST", "/v1/workers/w-1/drain", headers=AUTH)
        assert status == 200, worker
        assert worker["id"] == "w-1" and worker["status"] == "draining"
        assert worker["capacity"] == 8 and worker["task_types"] == ["shell", "internal"]
        assert await asyncio.wait_for(got.get(), 10) == "w-1"
        # Repeating it is harmless, and the other worker is untouched.
        status, worker = await api.call("POST", "/v1/workers/w-1/drain", headers=AUTH)
        assert status == 200 and worker["status"] == "draining"
        assert await asyncio.wait_for(got.get(), 10) == "w-1"
        statuses = dict(await api.pool.fetch("SELECT id, status FROM workers"))
        assert statuses == {"w-1": "draining", "w-2": "active"}
    finally:
        await listener.close()


async def test_drain_of_an_unknown_or_gone_worker_is_404(api: Api) -> None:
    await add_worker(api, "w-gone", status="gone")
    for worker_id in ("w-gone", "nobody", "x" * 300, "a%00b"):
        status, body = await api.call("POST", f"/v1/workers/{worker_id}/drain", headers=AUTH)
        assert status == 404, (worker_id, body)
        assert body["error"]["code"] == "not_found"
    assert await api.pool.fetchval("SELECT status FROM workers WHERE id = 'w-gone'") == "gone"
    status, _ = await api.call("POST", "/v1/workers/nobody/drain")
    assert status == 401


# ---------------------------------------------------------------------------------------------
# Activity


async def add_run(
    api: Api, task_id: uuid.UUID, *, delay_s: float, attempt: int = 1, finished: str | None = None
) -> None:
    now = datetime.now(UTC)
    await api.pool.execute(
        "INSERT INTO task_runs (id, task_id, attempt, status, worker_id, coordinator_id, scheduled_for,"
        " started_at, deadline_at, finished_at)"
        " VALUES ($1, $2, $3, $4, 'w', 'c', $5, $6, $6::timestamptz + interval '1 h', $7)",
        new_id(),
        task_id,
        attempt,
        finished or "running",
        now - timedelta(seconds=delay_s),
        now,
        now if finished else None,
    )


async def activity(api: Api, window_s: int) -> dict[str, Any]:
    status, body = await api.call("GET", f"/v1/stats/activity?window_s={window_s}", headers=AUTH)
    assert status == 200, body
    answer: dict[str, Any] = body
    return answer


async def test_activity_counts_rates_and_latency(api: Api) -> None:
    # (Answers are cached a second per window: the empty look uses a window of its own.)
    body = await activity(api, 9)
    assert body["submitted_per_s"] == 0 and body["finished_per_s"] == 0
    assert body["dispatch_latency_s"] == {"runs": 0, "p50": None, "p90": None, "p99": None, "max": None}

    tasks = [
        {"type": "shell", "payload": {"command": "true"}},
        {"type": "shell", "payload": {"command": "true"}},
        {"type": "internal", "payload": {"function": "zephyr.noop"}},
        {"type": "internal", "payload": {"function": "zephyr.noop"}, "schedule": {"delay_s": 3600}},
    ]
    status, created = await api.call("POST", "/v1/tasks/batch", json={"tasks": tasks}, headers=AUTH)
    assert status == 201, created
    ids = [uuid.UUID(i) for i in created["ids"]]
    # An old task is outside the window: created two minutes ago (its UUIDv7 says so too).
    old = uuid.UUID(int=(int((datetime.now(UTC).timestamp() - 120) * 1000) << 80) | (0x7 << 76) | (2 << 62))
    await api.pool.execute(
        "INSERT INTO tasks (id, type, payload, next_run_at, created_at) VALUES"
        " ($1, 'http', '{}', now() - interval '2 min', now() - interval '2 min')",
        old,
    )
    # Runs: three first attempts started in the window (0.1, 0.2 and 3 s after due), one retry
    # (not a dispatch latency), two finished.
    await add_run(api, ids[2], delay_s=0.1, finished="succeeded")
    await add_run(api, ids[2], delay_s=0.2, finished="failed")
    await add_run(api, ids[3], delay_s=3.0)
    await add_run(api, ids[3], delay_s=50.0, attempt=2)

    body = await activity(api, 10)
    assert body["window_s"] == 10
    assert body["submitted_per_s"] == pytest.approx(4 / 10)
    assert body["finished_per_s"] == pytest.approx(2 / 10)
    assert body["finished"] == {"succeeded": 1, "failed": 1}
    latency = body["dispatch_latency_s"]
    assert latency["runs"] == 3
    assert latency["p50"] == pytest.approx(0.2, abs=0.01)
    assert 0.2 < latency["p90"] < latency["p99"] < 3.0
    assert latency["max"] == pytest.approx(3.0, abs=0.01)
    assert body["approximate"] == []

    # A window of 3600 s sees the old task too.
    wide = await activity(api, 3600)
    assert wide["submitted_per_s"] == pytest.approx(5 / 3600, abs=1e-3)


async def test_activity_window_is_checked(api: Api) -> None:
    for value in ("0", "3601", "abc", "-5", "1.5", "²"):
        status, body = await api.call("GET", f"/v1/stats/activity?window_s={value}", headers=AUTH)
        assert status == 400, (value, body)
        assert body["error"]["field"] == "window_s"
    status, body = await api.call("GET", "/v1/stats/activity", headers=AUTH)
    assert status == 200 and body["window_s"] == 60


async def test_openapi_describes_the_dashboard_endpoints(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json", headers=AUTH)
    assert status == 200
    validate_openapi(doc)
    paths = doc["paths"]
    assert set(paths["/v1/workers/{id}/drain"]["post"]["responses"]) == {"200", "401", "404", "503"}
    assert set(paths["/v1/stats/activity"]["get"]["responses"]) == {"200", "400", "401", "503"}
