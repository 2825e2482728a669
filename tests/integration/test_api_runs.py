"""Runs, logs (pages and server-sent events), workers and stats."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.support.api_server import Api, running_api
from zephyr import stats as cluster_stats
from zephyr.client import AsyncClient
from zephyr.db.queries import QUERIES
from zephyr.ids import new_id


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as api:
        yield api


async def create(api: Api) -> str:
    status, task = await api.call(
        "POST", "/v1/tasks", json={"type": "internal", "payload": {"function": "zephyr.noop"}}
    )
    assert status == 201
    task_id: str = task["id"]
    return task_id


async def add_run(api: Api, task_id: str, attempt: int = 1, status: str = "running") -> str:
    run_id = new_id()
    await api.pool.execute(
        "INSERT INTO task_runs (id, task_id, attempt, status, worker_id, coordinator_id, scheduled_for,"
        " deadline_at, result, error, finished_at) VALUES ($1, $2, $3, $4, 'w1', 'c1', now(),"
        " now() + interval '1 minute', $5, $6, CASE WHEN $4 = 'running' THEN NULL ELSE now() END)",
        run_id,
        uuid.UUID(task_id),
        attempt,
        status,
        {"ok": True} if status == "succeeded" else None,
        {"code": "boom", "message": "it failed"} if status == "failed" else None,
    )
    return str(run_id)


async def add_logs(api: Api, run_id: str, lines: list[str], stream: str = "stdout") -> None:
    await api.pool.executemany(
        "INSERT INTO task_logs (run_id, ts, stream, line) VALUES ($1, now(), $2, $3)",
        [(uuid.UUID(run_id), stream, line) for line in lines],
    )


async def test_runs_of_a_task_newest_first_with_cursor(api: Api) -> None:
    task_id = await create(api)
    # UUIDv7 ids order by millisecond; within one millisecond their order is random: sort by id.
    runs = sorted([await add_run(api, task_id, attempt, "failed") for attempt in (1, 2, 3)])
    status, page = await api.call("GET", f"/v1/tasks/{task_id}/runs?limit=2")
    assert status == 200
    assert [run["id"] for run in page["runs"]] == [runs[2], runs[1]]
    status, rest = await api.call("GET", f"/v1/tasks/{task_id}/runs?limit=2&cursor={page['next_cursor']}")
    assert [run["id"] for run in rest["runs"]] == [runs[0]] and rest["next_cursor"] is None
    run = page["runs"][0]
    assert run["error"] == {"code": "boom", "message": "it failed"}
    assert run["task_id"] == task_id and run["worker_id"] == "w1"

    status, one = await api.call("GET", f"/v1/runs/{runs[2]}")
    assert status == 200 and one == run
    assert (await api.call("GET", f"/v1/runs/{uuid.uuid4()}"))[0] == 404
    assert (await api.call("GET", f"/v1/tasks/{uuid.uuid4()}/runs"))[0] == 404


async def test_logs_pages_in_order(api: Api) -> None:
    run_id = await add_run(api, await create(api))
    await add_logs(api, run_id, [f"line {n}" for n in range(25)])
    lines: list[str] = []
    cursor = ""
    while True:
        status, page = await api.call(
            "GET", f"/v1/runs/{run_id}/logs?limit=10" + (f"&cursor={cursor}" if cursor else "")
        )
        assert status == 200
        lines += [entry["line"] for entry in page["logs"]]
        if not page["next_cursor"]:
            break
        cursor = page["next_cursor"]
    assert lines == [f"line {n}" for n in range(25)]
    status, page = await api.call("GET", f"/v1/runs/{run_id}/logs")
    entry = page["logs"][0]
    assert (
        set(entry) == {"ts", "stream", "line"} and entry["stream"] == "stdout" and entry["ts"].endswith("Z")
    )
    assert (await api.call("GET", f"/v1/runs/{uuid.uuid4()}/logs"))[0] == 404


async def test_follow_streams_old_then_new_lines_and_ends_with_the_run(api: Api) -> None:
    run_id = await add_run(api, await create(api))
    await add_logs(api, run_id, ["before 1", "before 2"])
    seen: list[str] = []
    two_seen = asyncio.Event()

    async def follow() -> None:
        async with AsyncClient(api.base) as client:
            async for entry in client.follow_logs(run_id):
                seen.append(entry["line"])
                if len(seen) == 2:
                    two_seen.set()

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(two_seen.wait(), 10)
    await add_logs(api, run_id, ["after 1"], "stderr")
    await add_logs(api, run_id, ["after 2"], "system")
    await api.pool.execute(
        "UPDATE task_runs SET status = 'succeeded', finished_at = now() WHERE id = $1", uuid.UUID(run_id)
    )
    await asyncio.wait_for(follower, 10)  # ends by itself once the run has ended
    assert seen == ["before 1", "before 2", "after 1", "after 2"]


async def test_follow_wire_format_and_resume_by_last_event_id(api: Api) -> None:
    run_id = await add_run(api, await create(api), status="succeeded")
    await add_logs(api, run_id, ["a", "b", "c"])
    async with api.session.get(api.url(f"/v1/runs/{run_id}/logs?follow=1")) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = await resp.text()
    events = [block for block in text.split("\n\n") if block]
    assert len(events) == 4
    assert events[0].startswith("id: ") and "event: log" in events[0] and '"line":"a"' in events[0]
    assert events[-1] == 'event: end\ndata: {"status":"succeeded"}'
    first_id = events[0].split("\n")[0].removeprefix("id: ")
    async with api.session.get(
        api.url(f"/v1/runs/{run_id}/logs?follow=1"), headers={"Last-Event-ID": first_id}
    ) as resp:
        text = await resp.text()
    assert '"line":"a"' not in text and '"line":"b"' in text and '"line":"c"' in text


async def test_workers_in_spec_shape(api: Api) -> None:
    await api.pool.execute(
        "INSERT INTO workers (id, host, capacity, running, status, task_types, lease_expires_at)"
        " VALUES ('w-a', 'host-a', 10, 2, 'active', '{http,internal}', now() + interval '10 s'),"
        " ('w-b', 'host-b', 5, 0, 'gone', '{shell}', now())"
    )
    status, body = await api.call("GET", "/v1/workers")
    assert status == 200
    workers = {w["id"]: w for w in body["workers"]}
    assert set(workers) == {"w-a", "w-b"}
    a = workers["w-a"]
    assert (a["host"], a["capacity"], a["running"], a["status"], a["task_types"]) == (
        "host-a", 10, 2, "active", ["http", "internal"],
    )  # fmt: skip
    assert a["last_heartbeat_at"].endswith("Z")


async def test_stats(api: Api) -> None:
    ids = [await create(api) for _ in range(4)]
    await api.pool.execute("UPDATE tasks SET status = 'succeeded' WHERE id = $1", uuid.UUID(ids[0]))
    await api.pool.execute(
        "UPDATE tasks SET next_run_at = $2 WHERE id = $1",
        uuid.UUID(ids[1]),
        datetime.now(UTC) - timedelta(seconds=30),
    )
    await api.pool.execute(
        "UPDATE tasks SET next_run_at = now() + interval '1 hour' WHERE id = $1", uuid.UUID(ids[2])
    )
    run_id = await add_run(api, ids[0], status="succeeded")
    await api.pool.execute("UPDATE task_runs SET finished_at = now() WHERE id = $1", uuid.UUID(run_id))
    await api.pool.execute(
        "INSERT INTO workers (id, host, capacity, lease_expires_at) VALUES ('w', 'h', 1, now() + interval '9 s')"
    )
    status, stats = await api.call("GET", "/v1/stats")
    assert status == 200
    assert stats["tasks"] == {
        "pending": 3,
        "running": 0,
        "succeeded": 1,
        "dead": 0,
        "cancelled": 0,
        "paused": 0,
    }
    assert stats["queue_depth"] == 2
    assert 29 <= stats["oldest_due_age_s"] < 60
    assert stats["workers"] == 1
    assert stats["runs_per_s"] == round(1 / 60, 3)


async def test_stats_are_cached_per_pool(api: Api) -> None:
    first = await cluster_stats.stats(api.pool)
    await create(api)
    cached = await cluster_stats.stats(api.pool, max_age_s=3600)
    assert cached == first  # counted once, answered from the cache
    fresh = await cluster_stats.stats(api.pool, max_age_s=0)
    assert fresh["tasks"]["pending"] == first["tasks"]["pending"] + 1
    async with api.pool.acquire() as conn:  # a bare connection is never cached
        assert (await cluster_stats.stats(conn))["tasks"]["pending"] == fresh["tasks"]["pending"]


async def test_follow_ends_when_the_server_shuts_down(database_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with running_api(database_url) as api:
            run_id = await add_run(api, await create(api))  # stays running
            await add_logs(api, run_id, ["first"])
            resp = await session.get(api.url(f"/v1/runs/{run_id}/logs?follow=1"))
            first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)
            assert b'"line":"first"' in first
        # the server has closed within its context exit; the stream ended without an `end` event
        rest = await asyncio.wait_for(resp.content.read(), 10)
        assert b"event: end" not in rest
        resp.release()


async def test_unauthenticated_answer_names_the_scheme(database_url: str) -> None:
    async with (
        running_api(database_url, ZEPHYR_API_TOKENS="t") as api,
        api.session.get(api.url("/v1/stats")) as resp,
    ):
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_stats_counts_are_exact_and_current_on_a_big_table(api: Api) -> None:
    """Above any cap the counts stay exact and move with every change, without ANALYZE; only a
    queue depth past the due cap is a lower bound."""
    await api.pool.execute(
        """
        INSERT INTO tasks (id, name, type, payload, status, next_run_at)
        SELECT gen_random_uuid(), 'n', (ARRAY['internal', 'shell'])[n % 2 + 1], '{}'::jsonb,
               (ARRAY['pending', 'succeeded', 'succeeded', 'succeeded', 'dead'])[n % 5 + 1],
               now() - interval '1 minute'
        FROM generate_series(1, 20000) AS n
        """
    )
    await api.pool.execute("VACUUM ANALYZE tasks")
    await api.pool.execute(
        "UPDATE tasks SET status = 'paused' WHERE ctid IN (SELECT ctid FROM tasks WHERE status = 'pending' LIMIT 7)"
    )
    await api.pool.execute(
        "UPDATE tasks SET status = 'succeeded' WHERE id IN (SELECT id FROM tasks WHERE status = 'pending' LIMIT 1500)"
    )
    await api.pool.execute(
        "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE status = 'dead' LIMIT 10)"
    )
    stats = await cluster_stats.stats(api.pool, max_age_s=0, due_cap=1000)
    truth = dict(await api.pool.fetch("SELECT status, count(*) FROM tasks GROUP BY status"))
    assert stats["tasks"] == {status: truth.get(status, 0) for status in stats["tasks"]}
    by_type = await api.pool.fetch("SELECT type, status, count(*) AS n FROM tasks GROUP BY type, status")
    assert stats["tasks_by_type"] == {
        t: {r["status"]: r["n"] for r in by_type if r["type"] == t} for t in ("internal", "shell")
    }
    assert stats["pending_by_type"] == {
        t: stats["tasks_by_type"][t]["pending"] for t in ("internal", "shell")
    }
    # More than the cap are due, fewer than it are not yet: the depth is pending less those, exact.
    assert stats["queue_depth"] == truth["pending"]
    assert stats["queue_depth_by_type"] == stats["pending_by_type"]
    assert stats["approximate"] == ["oldest_due_age_s_by_type"]
    assert 59 <= stats["oldest_due_age_s"] < 120
    await api.pool.execute(
        "UPDATE tasks SET next_run_at = now() + interval '1 hour'"
        " WHERE id IN (SELECT id FROM tasks WHERE status = 'pending' AND type = 'shell' LIMIT 300)"
    )
    stats = await cluster_stats.stats(api.pool, max_age_s=0, due_cap=1000)
    assert stats["queue_depth_by_type"]["shell"] == stats["pending_by_type"]["shell"] - 300
    assert stats["queue_depth"] == truth["pending"] - 300
    # Both sides past the cap: a lower bound.
    await api.pool.execute(
        "UPDATE tasks SET next_run_at = now() + interval '1 hour'"
        " WHERE id IN (SELECT id FROM tasks WHERE status = 'pending' AND next_run_at < now() LIMIT 800)"
    )
    stats = await cluster_stats.stats(api.pool, max_age_s=0, due_cap=1000)
    assert stats["queue_depth"] == 1000  # at least this many
    assert set(stats["approximate"]) == {"queue_depth", "queue_depth_by_type", "oldest_due_age_s_by_type"}
    plan = "\n".join(row[0] for row in await api.pool.fetch("EXPLAIN " + QUERIES["stats"], 1000, 1000))
    assert "Seq Scan on tasks" not in plan, plan


async def test_pending_work_no_worker_offers_is_named(api: Api) -> None:
    for task in (
        {"type": "shell", "payload": {"command": "true"}},
        {"type": "http", "payload": {"url": "http://127.0.0.1:9/"}},
    ):
        assert (await api.call("POST", "/v1/tasks", json=task))[0] == 201
    await api.pool.execute(
        "INSERT INTO workers (id, host, capacity, task_types, lease_expires_at)"
        " VALUES ('w', 'h', 1, '{http,internal}', now() + interval '9 s'),"
        "        ('gone', 'h', 1, '{shell}', now() - interval '1 s')"
    )
    stats = await cluster_stats.stats(api.pool, max_age_s=0)
    assert stats["types_without_worker"] == ["shell"]  # the shell worker's lease has run out
    assert stats["pending_by_type"] == {"http": 1, "shell": 1}
    assert stats["offered_types"] == ["http", "internal"]
    await api.pool.execute("UPDATE workers SET lease_expires_at = now() + interval '9 s' WHERE id = 'gone'")
    assert (await cluster_stats.stats(api.pool, max_age_s=0))["types_without_worker"] == []


async def test_follow_delivers_many_pages_in_order(api: Api) -> None:
    run_id = await add_run(api, await create(api), status="failed")
    await add_logs(api, run_id, [f"l{n}" for n in range(1234)])
    async with AsyncClient(api.base) as client:
        lines = [entry["line"] async for entry in client.follow_logs(run_id)]
    assert lines == [f"l{n}" for n in range(1234)]
