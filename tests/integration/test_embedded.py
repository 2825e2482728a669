"""The embedded PostgreSQL takes settings that need a restart, and restarts only when they change."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import asyncpg

from zephyr.embedded import EmbeddedPostgres


def postmaster_pid(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().split("\n", 1)[0])


async def test_restart_with_applies_a_restart_setting_once() -> None:
    data = Path(f"/tmp/zephyr-settings-{uuid.uuid4().hex[:8]}")  # the server user cannot enter /root
    server = EmbeddedPostgres(data)
    server.start()
    try:
        dsn = server.restart_with({"shared_buffers": "48MB"})
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SHOW shared_buffers") == "48MB"
        finally:
            await conn.close()
        pid = postmaster_pid(data)
        assert server.restart_with({"shared_buffers": "48MB"}) == dsn
        assert postmaster_pid(data) == pid  # already in effect: no restart
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
