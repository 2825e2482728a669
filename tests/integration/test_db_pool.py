"""The services' connection pools against a real PostgreSQL: what releasing a connection sends."""

from __future__ import annotations

import asyncpg

from zephyr.db.pool import connect, create_pool


async def last_query_of(dsn: str, pid: int) -> str:
    observer = await connect(dsn)
    try:
        query: str = await observer.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        return query
    finally:
        await observer.close()


async def test_release_sends_no_reset_query_and_still_rolls_back_an_open_transaction(
    database_url: str,
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            await conn.fetchval("SELECT 41 + 1")
        # The backend's last statement is ours: no advisory unlock / CLOSE ALL / UNLISTEN / RESET ALL.
        assert await last_query_of(database_url, pid) == "SELECT 41 + 1"

        tx_conn: asyncpg.Connection = await pool.acquire()
        await tx_conn.execute("BEGIN")
        await tx_conn.execute("CREATE TEMP TABLE left_open (x int)")
        await pool.release(tx_conn)  # a transaction left open by a bug must not leak into the next user
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == pid
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open') IS NULL")
    finally:
        await pool.close()


async def test_pools_run_without_jit_and_keep_their_own_settings(database_url: str) -> None:
    """JIT compiles a statement estimated above jit_above_cost on every call (30-45 ms for a claim
    that runs in 0.3 ms); the services' pools turn it off, whatever else they set."""
    pool = await create_pool(database_url, min_size=1, max_size=1, server_settings={"enable_seqscan": "off"})
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW jit") == "off"
            assert await conn.fetchval("SHOW enable_seqscan") == "off"
    finally:
        await pool.close()
