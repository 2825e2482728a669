"""Fixtures shared by all tests: a real PostgreSQL, one fresh migrated database per test."""

from __future__ import annotations

import os

# As in zephyr/cli/main.py: tests run shell executors in processes where gRPC threads run.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from tests.support import database
from zephyr.db.pool import create_pool


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """DSN of a server where the tests may create databases."""
    dsn, embedded = database.find_server()
    yield dsn
    if embedded is not None:
        embedded.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg_template(pg_admin_dsn: str) -> str:
    return asyncio.run(database.ensure_template(pg_admin_dsn))


@pytest.fixture
def database_url(pg_admin_dsn: str, pg_template: str) -> Iterator[str]:
    """DSN of a freshly migrated database that only this test uses; dropped afterwards."""
    name = asyncio.run(database.create_test_database(pg_admin_dsn, pg_template))
    yield database.with_database(pg_admin_dsn, name)
    asyncio.run(database.drop_test_database(pg_admin_dsn, name))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool on this test's database."""
    pool = await create_pool(database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()
