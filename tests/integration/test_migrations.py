from __future__ import annotations

import asyncio

import asyncpg

from zephyr.db.migrate import migrate
from zephyr.db.pool import connect


async def test_migrate_is_idempotent_and_safe_concurrently(database_url: str) -> None:
    # The template already applied everything: a second run applies nothing.
    conn = await connect(database_url)
    try:
        assert await migrate(conn) == []
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
        assert {"tasks", "task_runs", "task_logs", "workers", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_concurrent_fresh_migrations_apply_once(pg_admin_dsn: str) -> None:
    from tests.support.database import drop_test_database, with_database

    admin = await asyncpg.connect(pg_admin_dsn)
    name = "zephyr_test_concurrent_migrate"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        conns = [await connect(with_database(pg_admin_dsn, name)) for _ in range(4)]
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = [versions for versions in results if versions]
        assert len(applied) == 1 and applied[0][0] == "0001_init"
        for c in conns:
            await c.close()
    finally:
        await drop_test_database(pg_admin_dsn, name)


async def test_queue_tables_are_vacuumed_after_thousands_of_changes(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT relname, reloptions FROM pg_class WHERE relname IN ('tasks', 'task_runs') ORDER BY relname"
        )
    finally:
        await conn.close()
    for row in rows:
        options = dict(option.split("=", 1) for option in row["reloptions"])
        assert options["autovacuum_vacuum_threshold"] == "5000", row["relname"]
        assert float(options["autovacuum_vacuum_scale_factor"]) <= 0.02, row["relname"]
    assert [r["relname"] for r in rows] == ["task_runs", "tasks"]
