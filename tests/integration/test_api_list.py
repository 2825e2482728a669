"""GET /v1/tasks: keyset paging with opaque cursors, filters, and index use on 100,000 rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.support.api_server import Api, running_api
from zephyr.db.queries import QUERIES
from zephyr.ids import new_ids
from zephyr.scheduler.cursors import FIRST_PAGE_BEFORE


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as api:
        yield api


async def fill(pool: asyncpg.Pool, count: int) -> None:
    """`count` tasks straight into the table: types and statuses cycle, names repeat per 100."""
    statuses = ("pending", "succeeded", "dead", "paused", "cancelled")
    types = ("http", "internal", "shell")
    await pool.execute(
        """
        INSERT INTO tasks (id, name, type, payload, status, next_run_at)
        SELECT id, 'name-' || (n % 100), ($2::text[])[n % 3 + 1], jsonb_build_object('n', n),
               ($3::text[])[n % 5 + 1], NULL
        FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)
        """,
        new_ids(count),
        list(types),
        list(statuses),
    )


async def all_pages(api: Api, query: str, limit: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, page = await api.call(
            "GET", f"/v1/tasks?limit={limit}{query}{'&cursor=' + cursor if cursor else ''}"
        )
        assert status == 200, page
        assert len(page["tasks"]) <= limit
        seen += page["tasks"]
        if page["next_cursor"] is None:
            return seen
        cursor = page["next_cursor"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "&status=dead",
        "&type=shell",
        "&name=name-7",
        "&status=paused&type=http",
        "&name=name-3&type=internal",
        "&name=name-7&status=dead",
        "&name=name-7&status=dead&type=shell",
    ],
)
async def test_pages_cover_every_match_once_newest_first(api: Api, query: str) -> None:
    await fill(api.pool, 600)
    tasks = await all_pages(api, query, 37)
    filters = dict(part.split("=") for part in query.split("&") if part)
    expected = await api.pool.fetchval(
        "SELECT count(*) FROM tasks WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR type = $2)"
        " AND ($3::text IS NULL OR name = $3)",
        filters.get("status"),
        filters.get("type"),
        filters.get("name"),
    )
    assert expected > 0
    assert len(tasks) == expected
    assert len({task["id"] for task in tasks}) == expected
    ids = [task["id"] for task in tasks]
    assert ids == sorted(ids, reverse=True)
    for key, value in filters.items():
        assert all(task[key] == value for task in tasks)


async def test_default_limit_is_100_and_tasks_have_spec_shape(api: Api) -> None:
    await fill(api.pool, 150)
    status, page = await api.call("GET", "/v1/tasks")
    assert status == 200
    assert len(page["tasks"]) == 100
    assert page["next_cursor"]
    assert "last_run" in page["tasks"][0]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=nope", "status"),
        ("type=ftp", "type"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("cursor=garbage!", "cursor"),
        ("cursor=r" + "0" * 32, "cursor"),  # a runs cursor is not a tasks cursor
        ("limit=\u00b2", "limit"),  # "²".isdigit() is True, int("²") raised: it answered 500
        ("limit=", "limit"),
        ("status=", "status"),
        ("name=", "name"),
        ("name=%00", "name"),
    ],
)
async def test_bad_query_parameters_name_the_field(api: Api, query: str, field: str) -> None:
    status, body = await api.call("GET", f"/v1/tasks?{query}")
    assert status == 400
    assert body["error"]["field"] == field


async def plan(pool: asyncpg.Pool, name: str, *args: Any) -> str:
    rows = await pool.fetch("EXPLAIN " + QUERIES[name], *args)
    return "\n".join(row[0] for row in rows)


async def test_each_page_uses_an_index_on_100000_rows(api: Api) -> None:
    await fill(api.pool, 100_000)
    # a rare status, so that the planner would prefer a status index over the primary key
    await api.pool.execute("UPDATE tasks SET status = 'running' WHERE name = 'name-42' AND type = 'http'")
    await api.pool.execute("ANALYZE tasks")
    middle = await api.pool.fetchval("SELECT id FROM tasks ORDER BY id OFFSET 50000 LIMIT 1")
    pairs_index = "tasks_status_type_id_idx"
    name_index = "tasks_name_status_type_id_idx"
    cases: list[tuple[str, tuple[Any, ...], str]] = [
        ("list_tasks", (101,), "tasks_pkey"),
        ("list_tasks_by_status_type", (101, "dead", None), pairs_index),
        ("list_tasks_by_status_type", (101, "running", None), pairs_index),
        ("list_tasks_by_status_type", (101, "dead", "shell"), pairs_index),
        ("list_tasks_by_status_type", (101, None, "shell"), pairs_index),
        ("list_tasks_by_name", (101, "name-5", None, None), name_index),
        ("list_tasks_by_name", (101, "name-42", "running", "http"), name_index),
    ]
    for name, args, index in cases:
        for before in (middle, FIRST_PAGE_BEFORE):
            text = await plan(api.pool, name, before, *args)
            # The page reads tasks through an index that yields them in page order, from the
            # cursor on, and stops after `limit`: no sequential or bitmap scan, no sort of all
            # the matches (a filtered listing sorts at most `limit` ids of each (status, type)).
            assert "Seq Scan" not in text, text
            assert "Bitmap" not in text, text
            scans = [line for line in text.splitlines() if " on tasks " in line]
            assert all("Index Scan" in line or "Index Only Scan" in line for line in scans), text
            page_scan = next(line for line in scans if "Backward" in line)
            assert f"Backward using {index} on tasks" in page_scan, text
            if name == "list_tasks":
                assert "id < " in text, text
                assert "Sort" not in text, text
            else:  # each pair's range starts at the cursor: (status, type, cursor)
                assert "ROW(status, type, id) < ROW(" in text, text
            # task_last_run() is inlined: its run is one probe of the runs index per task, not a
            # function call the planner cannot see into.
            assert "Function Scan" not in text, text
            assert "Index Scan Backward using task_runs_task_idx on task_runs r" in text, text
