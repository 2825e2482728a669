"""Finding a PostgreSQL server for the tests and giving each test its own migrated database.

Order: `ZEPHYR_TEST_DATABASE_URL`; else the local server on 127.0.0.1:5432 if it answers; else the
embedded server (data under /tmp). A template database is migrated once per schema version and
cloned per test (`CREATE DATABASE … TEMPLATE`), which takes a few milliseconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from zephyr.db.migrate import migrate
from zephyr.db.pool import connect
from zephyr.db.queries import migration_files

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
EMBEDDED_DIR = Path(f"/tmp/zephyr-test-pg-{os.getuid()}")
TEMPLATE_LOCK_KEY = 7411000002


def with_database(dsn: str, database: str) -> str:
    """`dsn` pointing at `database` instead (keeps host, user, query such as ?host=/socket)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def _answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def find_server() -> tuple[str, object | None]:
    """(admin DSN, embedded server handle or None)."""
    explicit = os.environ.get("ZEPHYR_TEST_DATABASE_URL")
    if explicit:
        return explicit, None
    if os.environ.get("ZEPHYR_TEST_EMBEDDED") != "1" and asyncio.run(_answers(LOCAL_DSN)):
        return LOCAL_DSN, None
    from zephyr.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(EMBEDDED_DIR)
    return server.start(), server


def schema_version() -> str:
    digest = hashlib.sha256()
    for path in migration_files():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


async def ensure_template(admin_dsn: str) -> str:
    """Create and migrate the template database for the current migrations, once per server."""
    name = f"zephyr_tpl_{schema_version()}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        # Several pytest processes may start at once: one builds the template, the others wait.
        await admin.execute("SELECT pg_advisory_lock($1)", TEMPLATE_LOCK_KEY)
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            building = f"{name}_building_{uuid.uuid4().hex[:8]}"
            await admin.execute(f'CREATE DATABASE "{building}"')
            conn = await connect(with_database(admin_dsn, building))
            try:
                await migrate(conn)
            finally:
                await conn.close()
            await admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        await admin.execute("SELECT pg_advisory_unlock($1)", TEMPLATE_LOCK_KEY)
    finally:
        await admin.close()
    return name


async def create_test_database(admin_dsn: str, template: str) -> str:
    name = f"zephyr_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    return name


async def drop_test_database(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
