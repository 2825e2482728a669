"""The PostgreSQL server the benchmarks run on, and the throw-away databases they create on it.

`ZEPHYR_DATABASE_URL` (or `--database-url`) names an existing server; without it an embedded
PostgreSQL is started in a temporary directory and removed afterwards. Either way the server must be
durable (fsync and synchronous_commit on): the figures are only comparable to the issue's if every
commit reaches the disk, so `settings()` is recorded with the results and a non-durable server is
flagged in them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg

from bench.queries import BENCH_QUERIES
from tests.support.database import ensure_template, with_database
from zephyr.embedded import EmbeddedPostgres

# The default shared_buffers (128 MB) holds the empty table's working set, not the big table's:
# with it the big-table trickle read and evicted about 3 buffers per task in some runs (pg_stat_io),
# its claims took 1.4-2.0 ms instead of 1.1 and its p50 wandered from 1.2 to 2.0 ms. Every system
# measured runs on this one server, peers included.
EMBEDDED_SETTINGS = {"shared_buffers": "1GB"}
DURABILITY_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")
REPORTED_SETTINGS = (*DURABILITY_SETTINGS, "server_version", "shared_buffers", "max_connections")


class BenchServer:
    """One PostgreSQL server: `start()` returns its admin DSN; `stop()` undoes what `start()` did."""

    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self.embedded: EmbeddedPostgres | None = None
        self._tmp_dir: Path | None = None
        self.admin_dsn = ""
        self._template = ""

    @property
    def kind(self) -> str:
        return "external" if self.database_url else "embedded"

    def start(self) -> str:
        if self.database_url:
            self.admin_dsn = self.database_url
        else:
            # /tmp, never /root: as root the server runs as another user that must reach its data.
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="zephyr-bench-"))
            self.embedded = EmbeddedPostgres(self._tmp_dir / "pg")
            self.embedded.start()
            self.admin_dsn = self.embedded.restart_with(EMBEDDED_SETTINGS)
        return self.admin_dsn

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    @property
    def data_dir(self) -> Path | None:
        """The embedded server's data directory; None for another server (its disk is not ours)."""
        return None if self._tmp_dir is None else self._tmp_dir / "pg"

    def postmaster_pid(self) -> int | None:
        """The embedded server's main process (first line of postmaster.pid); None for another server."""
        if self._tmp_dir is None:
            return None
        pid_file = self._tmp_dir / "pg" / "postmaster.pid"
        try:
            return int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    async def settings(self) -> dict[str, str]:
        """The server settings that decide how comparable the figures are."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            rows = await conn.fetch(BENCH_QUERIES["bench_settings"], list(REPORTED_SETTINGS))
        finally:
            await conn.close()
        return {row["name"]: row["setting"] for row in rows}

    async def create_zephyr_database(self) -> str:
        """A fresh database with Zephyr's migrations applied (cloned from a migrated template)."""
        if not self._template:
            self._template = await ensure_template(self.admin_dsn)
        return await self._create("zephyr_bench", self._template)

    async def create_empty_database(self, prefix: str) -> str:
        """A fresh empty database, for a peer system to install its own schema into."""
        return await self._create(prefix, "template1")

    async def _create(self, prefix: str, template: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.close()
        return with_database(self.admin_dsn, name)

    async def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[-1].split("?", 1)[0]
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def durable(settings: dict[str, str]) -> bool:
    """True when every commit is flushed to disk before it is acknowledged."""
    return all(settings.get(name) == "on" for name in DURABILITY_SETTINGS)


def default_database_url() -> str | None:
    return os.environ.get("ZEPHYR_DATABASE_URL") or None
