"""Crash and recovery with real processes: coordinators and workers as subprocesses, a real
PostgreSQL, kill -9 / SIGSTOP / database restarts. Leases are short (2 s) to keep these fast."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.cluster import Cluster, free_port, wait_until
from tests.support.fake_worker import insert_tasks
from zephyr import stats as cluster_stats
from zephyr import taskstore
from zephyr.db.migrate import migrate
from zephyr.db.pool import connect, create_pool
from zephyr.db.queries import QUERIES

pytestmark = pytest.mark.slow

FAST = {
    "ZEPHYR_LEASE_S": "2",
    "ZEPHYR_HEARTBEAT_S": "0.5",
    "ZEPHYR_RETRY_BASE_S": "0.1",
    "ZEPHYR_RETRY_CAP_S": "0.5",
}


def sleep_payload(seconds: float) -> dict[str, Any]:
    return {"function": "zephyr.sleep", "kwargs": {"seconds": seconds}}


async def runs_of(db: asyncpg.Pool, task_id: uuid.UUID) -> list[asyncpg.Record]:
    rows = await db.fetch(QUERIES["list_runs"], task_id, "ffffffff-ffff-ffff-ffff-ffffffffffff", 100)
    return list(reversed(rows))


async def status_counts(db: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    return {r["status"]: (r["runs"], r["tasks"]) for r in await db.fetch(QUERIES["run_status_counts"])}


async def succeeded_count(db: asyncpg.Pool) -> int:
    count: int = (await cluster_stats.stats(db, max_age_s=0))["tasks"]["succeeded"]
    return count


async def all_succeeded(db: asyncpg.Pool, count: int, timeout: float = 60) -> None:
    async def done() -> bool:
        stats = await cluster_stats.stats(db, max_age_s=0)
        return bool(stats["tasks"]["succeeded"] == count)

    await wait_until(done, timeout=timeout, what=f"{count} tasks succeeded")


async def test_kill_worker_mid_run_reruns_elsewhere(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with Cluster(database_url, tmp_path, **FAST, ZEPHYR_DRAIN_S="1") as cluster:
        await cluster.start_coordinator()
        doomed = await cluster.start_worker(ZEPHYR_WORKER_ID="doomed", ZEPHYR_WORKER_CONCURRENCY="1")
        # long enough to be still running whatever the machine's load when the kill comes
        [task_id] = await insert_tasks(db, payload=sleep_payload(10.0))

        async def running_on_doomed() -> bool:
            runs = await runs_of(db, task_id)
            return bool(runs) and runs[0]["worker_id"] == "doomed"

        await wait_until(running_on_doomed, what="run on doomed")
        await cluster.start_worker(ZEPHYR_WORKER_ID="survivor")
        killed_at = time.time()
        doomed.kill()

        async def rerun() -> list[asyncpg.Record] | None:
            runs = await runs_of(db, task_id)
            return runs if len(runs) == 2 else None

        runs = await wait_until(rerun, what="re-dispatch")
        print(f"kill -9 to re-dispatch: {runs[1]['started_at'].timestamp() - killed_at:.2f}s (lease 2 s)")
        assert [(r["status"], r["worker_id"]) for r in runs] == [("lost", "doomed"), ("running", "survivor")]
        assert runs[0]["error"]["code"] == "lost"


async def test_sigstop_worker_loses_runs_and_late_completion_is_refused(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with Cluster(database_url, tmp_path, **FAST) as cluster:
        coordinator = await cluster.start_coordinator()
        frozen = await cluster.start_worker(ZEPHYR_WORKER_ID="frozen", ZEPHYR_WORKER_CONCURRENCY="1")
        [task_id] = await insert_tasks(db, payload=sleep_payload(1.5))

        async def running_on_frozen() -> bool:
            # Claimed for it, and executing there: the worker's own heartbeat counts the run (a run
            # claimed but not yet received when SIGSTOP lands has no late result to turn away).
            runs = await runs_of(db, task_id)
            running = await db.fetchval("SELECT running FROM workers WHERE id = 'frozen'")
            return bool(runs) and runs[0]["worker_id"] == "frozen" and running == 1

        await wait_until(running_on_frozen, what="run on frozen")
        frozen.signal(signal.SIGSTOP)
        await cluster.start_worker(ZEPHYR_WORKER_ID="thawed-elsewhere")

        async def lost_and_rerun() -> bool:
            runs = await runs_of(db, task_id)
            return len(runs) == 2 and runs[0]["status"] == "lost"

        await wait_until(lost_and_rerun, what="lost and re-run")
        frozen.signal(signal.SIGCONT)
        first_run = str((await runs_of(db, task_id))[0]["id"])

        async def late_result_turned_away() -> bool:
            # Either the late completion reached fencing and was refused, or the worker noticed
            # its dropped stream first, re-registered and was told to abandon the run.
            log = coordinator.output()
            abandoned = re.search(r"worker frozen registered \(.*[1-9] abandoned\)", log)
            return f"ending of run {first_run}" in log or abandoned is not None

        await wait_until(late_result_turned_away, what="late result turned away")
        await all_succeeded(db, 1)
        runs = await runs_of(db, task_id)
        assert [r["status"] for r in runs] == ["lost", "succeeded"]
        assert runs[1]["worker_id"] == "thawed-elsewhere"


async def test_two_coordinators_two_workers_each_task_runs_once(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with Cluster(database_url, tmp_path, **FAST) as cluster:
        c1 = await cluster.start_coordinator()
        c2 = await cluster.start_coordinator()
        await cluster.start_worker(ZEPHYR_WORKER_ID="w1", ZEPHYR_COORDINATORS=c1.addr)
        await cluster.start_worker(ZEPHYR_WORKER_ID="w2", ZEPHYR_COORDINATORS=c2.addr)
        started = time.perf_counter()
        for _ in range(4):
            await insert_tasks(db, 500)
        await all_succeeded(db, 2000, timeout=90)
        print(f"2000 tasks, 2 coordinators, 2 workers: {time.perf_counter() - started:.2f}s")
        counts = await status_counts(db)
        assert counts == {"succeeded": (2000, 2000)}
        per_coordinator = {w["id"]: w["coordinator_id"] for w in await taskstore.list_workers(db)}
        assert len(set(per_coordinator.values())) == 2


async def test_kill_coordinator_under_load_and_restart_loses_nothing(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with Cluster(database_url, tmp_path, **FAST) as cluster:
        port = free_port()
        coordinator = await cluster.start_coordinator(port=str(port))
        for name in ("w1", "w2"):
            await cluster.start_worker(ZEPHYR_WORKER_ID=name, ZEPHYR_WORKER_CONCURRENCY="20")
        await insert_tasks(db, 1000, payload=sleep_payload(0.02))

        async def some_done() -> bool:
            return await succeeded_count(db) >= 100

        await wait_until(some_done, what="load under way")
        coordinator.kill()
        assert await succeeded_count(db) < 1000
        await cluster.start_coordinator(port=str(port))
        await all_succeeded(db, 1000, timeout=90)
        counts = await status_counts(db)
        assert counts["succeeded"] == (1000, 1000)
        assert (await cluster_stats.stats(db, max_age_s=0))["tasks"]["dead"] == 0


@pytest.fixture
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """A PostgreSQL server of this test alone (the shared one must not be restarted)."""
    from zephyr.embedded import EmbeddedPostgres

    data = Path(f"/tmp/zephyr-restart-{uuid.uuid4().hex[:8]}")
    server = EmbeddedPostgres(data)
    dsn = server.start()
    try:
        yield dsn, server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def pg_ctl(server: Any, *args: str) -> None:
    """pg_ctl on the private server's data directory, as the user the server runs as."""
    data = server.data_dir
    command = [str(server.bin_path / "pg_ctl"), "-D", str(data), "-l", str(data / "log"), *args]
    if server.system_user and os.geteuid() == 0:
        command = ["runuser", "-u", server.system_user, "--", *command]
    # The restarted server inherits our stdio: keep pipes out of it or run() never returns.
    subprocess.run(
        command,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )


async def test_database_restart_under_load_every_service_recovers(
    private_postgres: tuple[str, Any], tmp_path: Path
) -> None:
    dsn, server = private_postgres
    conn = await connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    db = await create_pool(dsn, min_size=1, max_size=3)
    try:
        async with Cluster(dsn, tmp_path, **FAST) as cluster:
            await cluster.start_coordinator()
            await cluster.start_worker(ZEPHYR_WORKER_ID="w1", ZEPHYR_WORKER_CONCURRENCY="20")
            await insert_tasks(db, 600, payload=sleep_payload(0.1))

            async def some_done() -> bool:
                return await succeeded_count(db) >= 50

            await wait_until(some_done, what="load under way")
            await asyncio.to_thread(pg_ctl, server, "restart", "-m", "fast", "-w")
            await db.expire_connections()
            # the restart really hit the middle of the load
            assert await succeeded_count(db) < 600

            async def done() -> bool:
                try:
                    return await succeeded_count(db) == 600
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    return False

            await wait_until(done, timeout=90, what="all tasks after the restart")
            # and the cluster still dispatches new work
            more = await insert_tasks(db, 10)
            await wait_until(done_after(db, 610), timeout=30, what="new tasks after the restart")
            assert len(more) == 10
            assert all(s.process.poll() is None for s in cluster.services)
    finally:
        await db.close()


def done_after(db: asyncpg.Pool, count: int) -> Any:
    async def check() -> bool:
        return bool(await succeeded_count(db) == count)

    return check


def grpcurl(*args: str) -> str:
    binary = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_grpcurl_lists_services_and_calls_admin(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with Cluster(database_url, tmp_path, **FAST) as cluster:
        coordinator = await cluster.start_coordinator(ZEPHYR_CLUSTER_TOKEN="tok")
        await cluster.start_worker(ZEPHYR_WORKER_ID="listed", ZEPHYR_CLUSTER_TOKEN="tok")
        await insert_tasks(db, 3)
        await all_succeeded(db, 3)
        services = (await asyncio.to_thread(grpcurl, "-plaintext", coordinator.addr, "list")).split()
        assert {"zephyr.v1.Admin", "zephyr.v1.WorkerGateway", "grpc.health.v1.Health"} <= set(services)
        auth = ["-H", "authorization: Bearer tok"]
        stats = json.loads(
            await asyncio.to_thread(grpcurl, "-plaintext", *auth, coordinator.addr, "zephyr.v1.Admin/Stats")
        )
        assert stats["tasks"]["succeeded"] == "3" and stats["workers"] == "1"
        workers = json.loads(
            await asyncio.to_thread(
                grpcurl, "-plaintext", *auth, coordinator.addr, "zephyr.v1.Admin/ListWorkers"
            )
        )
        assert [w["id"] for w in workers["workers"]] == ["listed"]
        health = await asyncio.to_thread(
            grpcurl, "-plaintext", coordinator.addr, "grpc.health.v1.Health/Check"
        )
        assert "SERVING" in health


async def test_dispatch_latency_at_200_tasks_per_second(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    """Tasks arrive one at a time at 200/s for 10 s; every one runs. Prints due -> claimed p50/p99."""
    async with Cluster(database_url, tmp_path, **FAST) as cluster:
        await cluster.start_coordinator()
        await cluster.start_worker(ZEPHYR_WORKER_ID="w1")
        await cluster.start_worker(ZEPHYR_WORKER_ID="w2")
        rate, seconds = 200, 10
        since = datetime.now(UTC)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(rate * seconds):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            await insert_tasks(db)
        achieved = rate * seconds / (loop.time() - start)
        await all_succeeded(db, rate * seconds, timeout=60)
        row = await db.fetchrow(QUERIES["dispatch_delay_percentiles"], since)
        assert row is not None and row["runs"] == rate * seconds
        print(
            f"dispatch due->claimed at {achieved:.0f} tasks/s: p50 {row['p50'] * 1000:.1f} ms, "
            f"p99 {row['p99'] * 1000:.1f} ms, max {row['max'] * 1000:.1f} ms"
        )
