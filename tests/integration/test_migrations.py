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
