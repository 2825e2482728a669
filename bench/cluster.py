"""A Zephyr cluster for one scenario: its own database, scheduler, coordinator and workers.

The services are started exactly as the end-to-end tests start them (`tests.support.cluster`), as
real subprocesses on free loopback ports, and waited for on real readiness signals.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg

from bench.database import BenchServer
from bench.queries import BENCH_QUERIES
from tests.support.cluster import Cluster, Service
from zephyr.db.pool import create_pool


class BenchCluster:
    """`async with BenchCluster(server, log_dir) as zc:` then `await zc.start(workers=2)`.

    With `database` given, the cluster runs on that existing database and leaves it in place;
    otherwise it creates a fresh migrated one and drops it on exit.
    """

    def __init__(
        self, server: BenchServer, log_dir: Path, *, database: str | None = None, **env: str
    ) -> None:
        self.server = server
        self.log_dir = log_dir
        self.env = env
        self.dsn = database or ""
        self._owns_database = database is None
        self.cluster: Cluster | None = None
        self.pool: asyncpg.Pool | None = None
        self.scheduler: Service | None = None
        self.coordinator: Service | None = None
        self.workers: list[Service] = []

    async def __aenter__(self) -> BenchCluster:
        if self._owns_database:
            self.dsn = await self.server.create_zephyr_database()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = Cluster(self.dsn, self.log_dir, **self.env)
        self.pool = await create_pool(self.dsn, min_size=1, max_size=4)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.stop_all)
        if self.pool is not None:
            await self.pool.close()
        if self._owns_database:
            await self.server.drop_database(self.dsn)

    @property
    def api_url(self) -> str:
        assert self.cluster is not None
        return self.cluster.api_url

    async def start(
        self, workers: int, *, coordinator_env: dict[str, str] | None = None, **worker_env: str
    ) -> None:
        """Scheduler, coordinator, then `workers` workers, each waited for until it is ready."""
        assert self.cluster is not None
        self.scheduler = await self.cluster.start_scheduler()
        self.coordinator = await self.cluster.start_coordinator(**(coordinator_env or {}))
        for _ in range(workers):
            await self.add_worker(**worker_env)

    async def add_worker(self, **env: str) -> Service:
        assert self.cluster is not None
        worker = await self.cluster.start_worker(True, **env)
        self.workers.append(worker)
        return worker

    async def fetchval(self, name: str, *args: Any) -> Any:
        assert self.pool is not None
        return await self.pool.fetchval(BENCH_QUERIES[name], *args)

    async def fetchrow(self, name: str, *args: Any) -> asyncpg.Record | None:
        assert self.pool is not None
        return await self.pool.fetchrow(BENCH_QUERIES[name], *args)

    async def fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        assert self.pool is not None
        return list(await self.pool.fetch(BENCH_QUERIES[name], *args))

    def check_alive(self) -> None:
        """Raise with its log if any service has exited: a crash must not read as slowness."""
        for proc in [p for p in (self.scheduler, self.coordinator) if p is not None] + self.workers:
            if proc.process.poll() is not None and proc.process.returncode not in (None, -9):
                raise RuntimeError(
                    f"{proc.name} exited with {proc.process.returncode}:\n{proc.output()[-3000:]}"
                )

    def logs(self) -> str:
        return self.cluster.dump_logs() if self.cluster is not None else ""
