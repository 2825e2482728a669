"""Apply the ordered SQL migrations of `data/migrations/`, each once, safely from many processes."""

from __future__ import annotations

import logging

import asyncpg

from zephyr.db.queries import QUERIES, migration_files

log = logging.getLogger(__name__)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet recorded in `schema_migrations`; return the versions applied.

    Runs in one transaction under an advisory lock, so concurrent callers serialise and the
    later ones find nothing left to do. Idempotent.
    """
    async with conn.transaction():
        await conn.execute(QUERIES["lock_migrations"])
        await conn.execute(QUERIES["create_migrations_table"])
        applied = {row["version"] for row in await conn.fetch(QUERIES["applied_migrations"])}
        done: list[str] = []
        for path in migration_files():
            version = path.stem
            if version in applied:
                continue
            await conn.execute(path.read_text())
            await conn.execute(QUERIES["record_migration"], version)
            done.append(version)
            log.info("applied migration %s", version)
    return done
