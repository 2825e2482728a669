"""`python -m bench.listing [--tasks N] [--database-url DSN]`: the task listings on a big table.

Fills a fresh migrated database with N tasks (2,000,000 by default; bench_fill_listed_tasks: a
skewed mix of statuses, types and names, so that some filter combinations match few tasks behind
many of each filter alone), vacuums and analyses it, then prints, for each filter combination the
list API offers, EXPLAIN (ANALYZE, BUFFERS) of its first and a middle page of 101 rows: time (best
of 3) and shared blocks, with a custom plan (what the scheduler runs) and with the generic plan a
pool that caches plans would switch to, and the indexes of tasks each read. Then the write path
per statement (EXPLAIN (ANALYZE, BUFFERS, WAL), rolled back): a 1000-task batch insert, a 100-slot
claim and a 1000-task status update. Writes `bench/results/listing-<time>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import uvloop

from bench.queries import BENCH_QUERIES
from bench.standalone import fresh_database, write_results
from zephyr import ids
from zephyr.db.pool import connect
from zephyr.db.queries import QUERIES
from zephyr.taskstore import NewTask, list_tasks_query, shared_or_each

PAGE = 101  # the API's default limit, plus the row that says whether a next page exists
FIRST_PAGE = uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff")
# (status, type, name): each filter alone, and combinations that match few tasks behind many that
# match one of their filters (dead & publish: 0.5% of the dead tasks, 1% of the publish ones).
CASES: list[tuple[str | None, str | None, str | None]] = [
    (None, None, None),
    ("dead", None, None),
    (None, "publish", None),
    (None, None, "nightly-report"),
    ("dead", "publish", None),
    ("paused", "email", None),
    ("succeeded", "internal", None),
    ("paused", None, "resize-image"),  # paused: 0.05% of the name's tasks
    (None, "publish", "resize-image"),
    ("dead", "publish", "resize-image"),
    ("dead", None, "sync-7"),
]
PLAN_MODES = ("force_custom_plan", "force_generic_plan")
YEAR = timedelta(days=365)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _literal(value: object) -> str:
    return "NULL" if value is None else f"'{value}'"


async def explain_page(
    conn: asyncpg.Connection, filters: tuple[str | None, ...], before: uuid.UUID
) -> dict[str, Any]:
    """One page of a filter combination under each plan mode: best time of 3, blocks, indexes."""
    status, task_type, name = filters
    query, args = list_tasks_query(status, task_type, name)
    types = ", ".join(["uuid", "int"] + ["text"] * len(args))
    await conn.execute(f"PREPARE listing ({types}) AS {QUERIES[query].rstrip().rstrip(';')}")
    values = ", ".join([f"'{before}'", str(PAGE)] + [_literal(v) for v in args])
    out: dict[str, Any] = {}
    for mode in PLAN_MODES:
        await conn.execute(f"SET plan_cache_mode = {mode}")
        runs = []
        for _ in range(3):
            raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE listing ({values})")
            runs.append((json.loads(raw) if isinstance(raw, str) else raw)[0])
        best = min(runs, key=lambda run: float(run["Execution Time"]))
        plan = best["Plan"]
        out[mode.split("_")[1]] = {
            "ms": round(float(best["Execution Time"]), 2),
            "blocks": int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"]),
            "rows": int(plan["Actual Rows"]),
            "indexes": sorted(
                {
                    n["Index Name"]
                    for n in _nodes(plan)
                    if n.get("Relation Name") == "tasks" and "Index Name" in n
                }
            ),
        }
    await conn.execute("RESET plan_cache_mode")
    await conn.execute("DEALLOCATE listing")
    return out


async def statement_cost(conn: asyncpg.Connection, query: str, *args: Any) -> dict[str, int]:
    """WAL records and bytes and shared buffers of one statement, rolled back."""
    tx = conn.transaction()
    await tx.start()
    try:
        raw = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) " + query, *args)
    finally:
        await tx.rollback()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return {
        "wal_records": int(plan["WAL Records"]),
        "wal_bytes": int(plan["WAL Bytes"]),
        "buffers": int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"]),
    }


async def write_path(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    now = datetime.now(UTC)
    batch = [
        NewTask(
            f"bench-{i % 20}",
            "internal",
            '{"function":"zephyr.noop"}',
            None,
            False,
            False,
            0,
            3,
            300.0,
            now,
            None,
            None,
        )
        for i in range(1000)
    ]
    columns = [shared_or_each(column) for column in zip(*batch, strict=True)]
    pending = [row["id"] for row in await conn.fetch(BENCH_QUERIES["bench_pending_ids"], 1000)]
    return {
        "insert_tasks_batch_1000": await statement_cost(
            conn, QUERIES["insert_tasks_batch"], ids.new_ids(1000), *columns
        ),
        # The filled pending tasks are due later: the claim's cutoff is a year ahead so that it takes 100.
        "claim_due_100": await statement_cost(
            conn, QUERIES["claim_due"], ["internal"], ["w"] * 100, ids.new_ids(100), "c1", 30.0, now + YEAR
        ),
        "status_update_1000": await statement_cost(conn, BENCH_QUERIES["bench_finish_tasks"], pending),
    }


async def main(tasks: int, database_url: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(),
        "tasks": tasks,
        "load_1m": os.getloadavg()[0],
    }
    async with fresh_database(database_url) as (dsn, _):
        conn = await connect(dsn, server_settings={"jit": "off"})
        try:
            await conn.execute(BENCH_QUERIES["bench_setseed"])
            await conn.execute(BENCH_QUERIES["bench_fill_listed_tasks"], tasks)
            await conn.execute(BENCH_QUERIES["bench_vacuum_analyze"])
            middle = await conn.fetchval(BENCH_QUERIES["bench_middle_task_id"], tasks // 2)
            results["pages"] = [
                {"filters": dict(zip(("status", "type", "name"), case, strict=True)), "page": page}
                | await explain_page(conn, case, before)
                for case in CASES
                for page, before in (("first", FIRST_PAGE), ("middle", middle))
            ]
            results["write_path"] = await write_path(conn)
        finally:
            await conn.close()
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2_000_000, help="tasks in the table (default 2,000,000)")
    parser.add_argument("--database-url", help="PostgreSQL server DSN where databases may be created")
    args = parser.parse_args()
    results = uvloop.run(main(args.tasks, args.database_url))
    write_results("listing", results)
    for row in results["pages"]:
        filters = "&".join(f"{k}={v}" for k, v in row["filters"].items() if v) or "(none)"
        cells = " | ".join(
            f"{mode} {row[mode]['ms']:8.2f} ms {row[mode]['blocks']:6d} blocks {','.join(row[mode]['indexes'])}"
            for mode in ("custom", "generic")
        )
        print(f"{filters:45} {row['page']:6} | {cells}")
    for statement, cost in results["write_path"].items():
        print(
            f"{statement:24} {cost['wal_records']:6d} WAL records {cost['wal_bytes']:9d} bytes {cost['buffers']:6d} buffers"
        )
    print(f"load average at the start: {results['load_1m']}")


if __name__ == "__main__":
    cli()
