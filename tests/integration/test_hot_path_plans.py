"""The statements run for every task, on a real PostgreSQL: which rows the claim takes, and that each
statement's cost follows the rows it handles, not the rows the tables hold, whatever the statistics
say and whenever its plan was cached."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from zephyr import ids, taskstore
from zephyr import stats as cluster_stats
from zephyr.coordinator.server import CLAIM_PATH_SETTINGS, ENDINGS_SETTINGS
from zephyr.db.queries import QUERIES
from zephyr.scheduler.cursors import FIRST_PAGE_BEFORE

FILL_SQL = """
INSERT INTO tasks (id, type, payload, status, priority, next_run_at)
SELECT gen_random_uuid(), $1, '{}', 'pending', $2, $3::timestamptz + make_interval(secs => i * $4::float8)
FROM generate_series(1, $5) AS i
"""


async def fill(
    conn: asyncpg.Connection | asyncpg.Pool,
    count: int,
    *,
    due: datetime,
    step_s: float = 0.0,
    priority: int = 0,
    type: str = "internal",
) -> None:
    await conn.execute(FILL_SQL, type, priority, due, step_s, count)


CLAIM_PARAMS = "(text[], text[], uuid[], text, float8, timestamptz)"


def claim_args(slots: int, now: datetime | None = None) -> tuple[Any, ...]:
    return (["internal"], ["w"] * slots, ids.new_ids(slots), "c1", 30.0, now)


async def claim(conn: asyncpg.Connection, slots: int) -> list[asyncpg.Record]:
    async with conn.transaction():
        rows: list[asyncpg.Record] = await conn.fetch(QUERIES["claim_due"], *claim_args(slots))
    return rows


def _find(plan: dict[str, Any], name: str) -> dict[str, Any] | None:
    if plan.get("Subplan Name") == name:
        return plan
    for child in plan.get("Plans", []):
        found = _find(child, name)
        if found is not None:
            return found
    return None


async def blocks_to_find_due(conn: asyncpg.Connection, slots: int) -> int:
    """Shared buffers the claim reads or hits to choose its rows (the `due` part, before the writes),
    from EXPLAIN ANALYZE in a transaction rolled back: the larger of a custom plan (made with the
    statistics) and the generic plan a prepared statement switches to after five runs."""
    blocks = []
    await conn.execute(
        f"PREPARE claim_due_test {CLAIM_PARAMS} AS {QUERIES['claim_due'].rstrip().rstrip(';')}"
    )
    for mode in ("force_custom_plan", "force_generic_plan"):
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            run_ids = ",".join(str(i) for i in ids.new_ids(slots))
            raw = await conn.fetchval(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE claim_due_test"
                f" ('{{internal}}', array_fill('w'::text, ARRAY[{slots}]), '{{{run_ids}}}', 'c1', 30, NULL)"
            )
        finally:
            await tx.rollback()
        due = _find((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"], "CTE due")
        assert due is not None, raw
        blocks.append(int(due["Shared Hit Blocks"]) + int(due["Shared Read Blocks"]))
    await conn.execute("DEALLOCATE claim_due_test")
    return max(blocks)


async def blocks_of(conn: asyncpg.Connection, query: str, *args: Any) -> int:
    raw = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, *args)
    top = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


def _rows_scanned(plan: dict[str, Any]) -> int:
    own = int(plan["Actual Rows"] * plan["Actual Loops"]) if "Scan" in plan["Node Type"] else 0
    return own + sum(_rows_scanned(child) for child in plan.get("Plans", []))


async def rows_read_to_find_rows(conn: asyncpg.Connection, statement: str) -> int:
    """Rows the scans of a statement return (the rows it reads to find the rows it changes)."""
    raw = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + statement)
    return _rows_scanned((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])


async def test_claim_takes_due_rows_by_priority_then_due_time(db: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    async with db.acquire() as conn:
        await fill(conn, 5_000, due=now + timedelta(days=1), step_s=1, priority=9)  # only future rows
        await fill(conn, 3, due=now - timedelta(seconds=30), step_s=1, priority=5)
        await fill(conn, 4, due=now - timedelta(seconds=60), step_s=1, priority=0)
        await fill(conn, 4, due=now - timedelta(seconds=90), step_s=1, priority=-3)
        await fill(conn, 10, due=now - timedelta(seconds=90), priority=5, type="http")  # not offered
        rows = await claim(conn, 9)
        got = [(r["type"], r["scheduled_for"]) for r in rows]
        prios = await conn.fetch(
            "SELECT priority, next_run_at FROM tasks WHERE id = ANY($1::uuid[])", [r["task_id"] for r in rows]
        )
        by_due = {p["next_run_at"]: p["priority"] for p in prios}
        assert [t for t, _ in got] == ["internal"] * 9
        # Slot order: priority 5 (3 rows), then priority 0 (4), then the 2 earliest of priority -3.
        assert [by_due[due] for _, due in got] == [5, 5, 5, 0, 0, 0, 0, -3, -3]
        assert [due for _, due in got[:3]] == sorted(due for _, due in got[:3])
        assert all(due <= now for _, due in got)
        # What is left: 2 due rows of priority -3, then nothing due of an offered type.
        assert len(await claim(conn, 100)) == 2
        assert await claim(conn, 100) == []


async def test_due_work_queries_cost_what_they_return_not_the_table(db: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    async with db.acquire() as conn:
        await fill(conn, 200_000, due=now + timedelta(days=1), step_s=1)
        await conn.execute("VACUUM ANALYZE tasks")
        # A burst lands after the statistics were taken: the planner believes almost nothing is due.
        await fill(conn, 20_000, due=now - timedelta(seconds=5))
        many_due = await blocks_to_find_due(conn, 100)
        # A few urgent rows behind a backlog of lower priority due earlier.
        await fill(conn, 5, due=now - timedelta(seconds=1), priority=7)
        urgent = await blocks_to_find_due(conn, 5)
        # Fewer due rows than the batch: the scan must stop at the last due row, not walk the future.
        await conn.execute("DELETE FROM tasks WHERE next_run_at <= now()")
        await conn.execute("VACUUM tasks")
        await fill(conn, 10, due=now - timedelta(seconds=5))
        few_due = await blocks_to_find_due(conn, 100)
        timer = await blocks_of(conn, QUERIES["next_due"], ["internal"])
        depth = await blocks_of(conn, QUERIES["stats"], cluster_stats.DUE_CAP, cluster_stats.RECENT_RUNS_CAP)
        assert (await cluster_stats.stats(conn))["queue_depth"] == 10
        assert await conn.fetchval(QUERIES["next_due"], ["internal"]) < 0
        assert await conn.fetchval(QUERIES["next_due"], ["http"]) is None
    # Reading 100 rows and their index entries is about a hundred blocks; sorting 20,000 due rows,
    # walking a backlog or 200,000 future index entries is thousands.
    assert many_due < 250, many_due
    assert urgent < 100, urgent
    assert few_due < 100, few_due
    assert timer < 100, timer
    assert depth < 100, depth


ENDING_STATEMENTS = {
    "finish_successes": "(uuid[], int[], text[], jsonb[])",
    "finish_runs": "(uuid[], int[], text[], text[], jsonb[], jsonb[])",
    "update_tasks_after_runs": "(uuid[], uuid[], text[], text[], timestamptz[], int[], bool[])",
}


async def test_endings_keep_key_lookups_with_a_plan_cached_on_small_tables(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        for name, value in ENDINGS_SETTINGS.items():
            await conn.execute(f"SET {name} = {value}")
        # A young installation: a few hundred runs, all of them over, and statistics that say so.
        await fill(conn, 300, due=datetime.now(UTC) - timedelta(seconds=1))
        await conn.fetch(QUERIES["claim_due"], *claim_args(300))
        await conn.execute("UPDATE task_runs SET status = 'succeeded', finished_at = now()")
        await conn.execute(
            "UPDATE tasks SET status = 'succeeded'"
            " WHERE id IN (SELECT task_id FROM task_runs WHERE status = 'succeeded')"
        )
        await conn.execute("ANALYZE tasks, task_runs")
        # Unless the pool plans each call, its sixth call on would reuse a plan made now.
        await conn.execute(
            f"SET plan_cache_mode = {ENDINGS_SETTINGS.get('plan_cache_mode', 'force_generic_plan')}"
        )
        for name, types in ENDING_STATEMENTS.items():
            await conn.execute(f"PREPARE {name} {types} AS {QUERIES[name].rstrip().rstrip(';')}")
        # The plans are made now, on small tables, as a coordinator's first batches make them.
        await conn.execute("EXECUTE finish_successes ('{}', '{}', '{}', '{}')")
        await conn.execute("EXECUTE finish_runs ('{}', '{}', '{}', '{}', '{}', '{}')")
        await conn.execute("EXECUTE update_tasks_after_runs ('{}', '{}', '{}', '{}', '{}', '{}', '{}')")
        # Then the tables grow, with no ANALYZE to replace the plans: 20,000 more tasks, all running.
        await fill(conn, 20_000, due=datetime.now(UTC) - timedelta(seconds=1))
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = auto")
            for _ in range(200):
                await conn.fetch(QUERIES["claim_due"], *claim_args(100))
        rows = await conn.fetch(
            "SELECT id, task_id FROM task_runs WHERE status = 'running' ORDER BY id LIMIT 20"
        )
        run_ids = "{" + ",".join(str(r["id"]) for r in rows) + "}"
        task_ids = "{" + ",".join(str(r["task_id"]) for r in rows) + "}"
        n = len(rows)
        finish = (
            f"EXECUTE finish_runs ('{run_ids}', array_fill(1, ARRAY[{n}]), array_fill('w'::text, ARRAY[{n}]),"
            f" array_fill('succeeded'::text, ARRAY[{n}]), array_fill(NULL::jsonb, ARRAY[{n}]),"
            f" array_fill(NULL::jsonb, ARRAY[{n}]))"
        )
        update = (
            f"EXECUTE update_tasks_after_runs ('{task_ids}', '{run_ids}',"
            f" array_fill('running'::text, ARRAY[{n}]), array_fill('succeeded'::text, ARRAY[{n}]),"
            f" array_fill(NULL::timestamptz, ARRAY[{n}]), array_fill(1, ARRAY[{n}]),"
            f" array_fill(false, ARRAY[{n}]))"
        )
        successes = (
            f"EXECUTE finish_successes ('{run_ids}', array_fill(1, ARRAY[{n}]),"
            f" array_fill('w'::text, ARRAY[{n}]), array_fill(NULL::jsonb, ARRAY[{n}]))"
        )
        tx = conn.transaction()
        await tx.start()
        try:
            finished = await rows_read_to_find_rows(conn, finish)
            updated = await rows_read_to_find_rows(conn, update)
            assert await conn.fetchval("SELECT count(*) FROM task_runs WHERE status = 'succeeded'") == 300 + n
        finally:
            await tx.rollback()
        tx = conn.transaction()
        await tx.start()
        try:
            succeeded = await rows_read_to_find_rows(conn, successes)
            assert await conn.fetchval("SELECT count(*) FROM task_runs WHERE status = 'succeeded'") == 300 + n
            assert await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'succeeded'") == 300 + n
        finally:
            await tx.rollback()
    # 20 runs by id, each with its task: bounded by the batch (at worst each of its 20 elements
    # compared with each of the 20 rows found). A plan that reads the 20,000 running runs or tasks
    # to find them reads 20,000 or more.
    assert finished <= 20 * 20 + 100, finished
    assert updated <= 20 * 20 + 100, updated
    assert succeeded <= 20 * 20 + 100, succeeded


async def test_claim_keeps_its_plan_good_when_cached_on_small_tables(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        for name, value in CLAIM_PATH_SETTINGS.items():
            await conn.execute(f"SET {name} = {value}")
        await fill(conn, 300, due=datetime.now(UTC) - timedelta(seconds=1))
        await conn.execute("ANALYZE tasks, task_runs")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(
            f"PREPARE claim_small {CLAIM_PARAMS} AS {QUERIES['claim_due'].rstrip().rstrip(';')}"
        )
        await conn.execute(
            f"EXECUTE claim_small ('{{internal}}', '{{w}}', '{{{ids.new_id()}}}', 'c1', 30, NULL)"
        )
        await fill(conn, 200_000, due=datetime.now(UTC) + timedelta(days=1), step_s=1)
        await fill(conn, 20_000, due=datetime.now(UTC) - timedelta(seconds=1))
        run_ids = ",".join(str(i) for i in ids.new_ids(100))
        tx = conn.transaction()
        await tx.start()
        try:
            raw = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim_small"
                f" ('{{internal}}', array_fill('w'::text, ARRAY[100]), '{{{run_ids}}}', 'c1', 30, NULL)"
            )
        finally:
            await tx.rollback()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    assert plan["Actual Rows"] == 100
    # 100 due rows, each updated by key, each run inserted, the result joined: several hundred rows
    # in all. A scan of the 220,000 tasks (or of the due ones) to update or find them is 20,000+.
    assert _rows_scanned(plan) < 2_000, _rows_scanned(plan)


LISTING_FILL_SQL = """
INSERT INTO tasks (id, name, type, payload, status)
SELECT (lpad(to_hex($1::bigint + i), 12, '0') || '7' || substr(md5(i::text), 1, 19))::uuid, $2, $3, '{}', $4
FROM generate_series(1, $5::bigint) AS i
"""


async def fill_listed(
    conn: asyncpg.Connection, first: int, count: int, *, name: str, type: str, status: str
) -> None:
    """`count` tasks with ids in creation order from `first` on (as UUIDv7 ids are)."""
    await conn.execute(LISTING_FILL_SQL, first, name, type, status, count)


async def blocks_of_either_plan(conn: asyncpg.Connection, query: str, types: str, args: str) -> int:
    """Shared buffers a statement reads or hits: the larger of its custom plan and the generic plan
    a prepared statement may switch to after five runs."""
    await conn.execute(f"PREPARE listing_test {types} AS {query.rstrip().rstrip(';')}")
    blocks = []
    for mode in ("force_custom_plan", "force_generic_plan"):
        await conn.execute(f"SET plan_cache_mode = {mode}")
        blocks.append(await blocks_of(conn, f"EXECUTE listing_test ({args})"))
    await conn.execute("RESET plan_cache_mode")
    await conn.execute("DEALLOCATE listing_test")
    return max(blocks)


LISTING_CASES = [
    # (status, type, name), each matching 20 old tasks behind 100,000 newer ones of their name and
    # 10,000 of their status or type
    ("dead", "publish", None),
    ("dead", "publish", "report"),
    ("paused", None, None),
    ("paused", None, "report"),
    (None, "email", None),
    (None, "email", "report"),
]


async def test_listings_read_their_own_rows_whatever_the_other_filters_match(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        # Oldest first: the rare rows, then many rows that share one filter with them each.
        await fill_listed(conn, 0, 20, name="report", type="publish", status="dead")
        await fill_listed(conn, 100, 20, name="report", type="email", status="paused")
        await fill_listed(conn, 1_000, 10_000, name="report", type="internal", status="dead")
        await fill_listed(conn, 20_000, 10_000, name="report", type="publish", status="succeeded")
        await fill_listed(conn, 40_000, 80_000, name="report", type="internal", status="succeeded")
        await conn.execute("VACUUM ANALYZE tasks")
        costs = {}
        for status, task_type, name in LISTING_CASES:
            before = "'ffffffff-ffff-ffff-ffff-ffffffffffff'"
            filters = [status, task_type]
            query, types = QUERIES["list_tasks_by_status_type"], "(uuid, int, text, text)"
            if name is not None:
                filters = [name, status, task_type]
                query, types = QUERIES["list_tasks_by_name"], "(uuid, int, text, text, text)"
            literals = ", ".join("NULL" if v is None else f"'{v}'" for v in filters)
            costs[(status, task_type, name)] = await blocks_of_either_plan(
                conn, query, types, f"{before}, 101, {literals}"
            )
            page = await taskstore.list_tasks(
                conn, before=FIRST_PAGE_BEFORE, limit=101, status=status, task_type=task_type, name=name
            )
            expected = await conn.fetch(
                "SELECT id FROM tasks WHERE ($1::text IS NULL OR status = $1)"
                " AND ($2::text IS NULL OR type = $2) AND ($3::text IS NULL OR name = $3)"
                " ORDER BY id DESC LIMIT 101",
                status,
                task_type,
                name,
            )
            assert [t["id"] for t in page] == [str(r["id"]) for r in expected]
            assert len(page) == 20
    # 20 rows, each with its task row and newest run, and one index probe per (status, type) pair:
    # a couple of hundred blocks. Walking the 10,000 rows of a status, a type or the primary key
    # to find them is thousands.
    for case, blocks in costs.items():
        assert blocks < 400, (case, blocks)
