"""Nothing jams, nothing is lost, under sustained faults (issue 13).

Mixed tasks (noop, sleep, http to a local target, shell, failing, recurring with and without
overlap, cancelled mid-run) run on 2 coordinators and 4 workers, all real subprocesses, against an
embedded PostgreSQL of the test's own (it is restarted and frozen), while a driver:
- kills -9 a random worker every few seconds and starts it again;
- kills -9 a coordinator and restarts it;
- restarts PostgreSQL;
- freezes PostgreSQL (SIGSTOP of every server process) for longer than twice the lease;
- cuts one worker off its coordinator for longer than twice the lease: that worker lives in a
  network namespace joined by a veth pair whose host end goes down (as root; elsewhere the worker
  is SIGSTOPped instead), then restores it. Namespace, veth and addresses are this run's own
  (tests/support/netns.py), so concurrent runs never touch each other's.
At the end every task is terminal, every succeeded one-off task has exactly one succeeded run, no
run is left running, every lost firing of a recurring task ran again, and no cancelled task ran
after its cancel committed. The counts are printed.

Bounded: CHAOS_TASKS tasks (CHAOS_TASKS env to change), a driver of DRIVE_S seconds, a settle phase
of at most SETTLE_S; the pytest timeout stops it in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.support.cluster import Cluster, Service, free_port, grpc_serving, wait_until
from tests.support.netns import OtherHost, other_host
from tests.support.pgfreeze import frozen
from zephyr import taskstore
from zephyr.db.pool import create_pool
from zephyr.db.queries import QUERIES
from zephyr.embedded import EmbeddedPostgres
from zephyr.ids import new_id

pytestmark = [pytest.mark.slow, pytest.mark.timeout(560)]

TASKS = int(os.environ.get("CHAOS_TASKS", "20000"))
LEASE_S = 3.0
HEARTBEAT_S = 1.0
DRIVE_S = 150.0
SUBMIT_S = 110.0
SETTLE_S = 150.0
WORKERS = 4
CONCURRENCY = 40
TOKEN = "i13-chaos-token"
RECURRING = 12
CANCELLED = 40

Row = tuple[str, dict[str, Any], int, dict[str, Any] | None]  # type, payload, max_attempts, schedule


@dataclass
class Chaos:
    """What the driver did, for the checks and the counts."""

    worker_kills: list[tuple[str, float]] = field(default_factory=list)  # (worker id, unix time)
    cancels: dict[uuid.UUID, datetime] = field(default_factory=dict)  # task -> cancel committed
    events: list[str] = field(default_factory=list)


# -- a partition ------------------------------------------------------------------------------------


def netns_available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def partition_host() -> Iterator[OtherHost | None]:
    """Another host for the worker that is cut off (tests/support/netns.py: its names are this
    run's own), or None where network namespaces are not available (that worker is SIGSTOPped)."""
    if not netns_available():
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            host: OtherHost | None = stack.enter_context(other_host("ch"))
        except subprocess.CalledProcessError:
            host = None
        yield host


# -- the cluster -------------------------------------------------------------------------------------


async def serving(cluster: Cluster, proc: Service) -> bool:
    cluster._check_alive(proc)
    return await grpc_serving(proc.addr)


async def start_coordinator(cluster: Cluster, listen: str, name: str) -> Service:
    proc = cluster.spawn("coordinator", ZEPHYR_GRPC_ADDR=listen, ZEPHYR_COORDINATOR_ID=name)
    proc.addr = listen
    await wait_until(lambda: serving(cluster, proc), timeout=30, what=f"coordinator {name}")
    return proc


def start_worker(
    cluster: Cluster, worker_id: str, coordinators: str, *, host: OtherHost | None = None
) -> Service:
    """A worker (on `host`, when given) under `worker_id`; its log file is named after it."""
    env = {**cluster.base_env, "ZEPHYR_WORKER_ID": worker_id, "ZEPHYR_COORDINATORS": coordinators}
    argv = [sys.executable, "-m", "zephyr.cli.main", "worker"]
    if host is not None:
        argv = [*host.exec_prefix, *argv]
    cluster._counter += 1
    proc = Service(f"worker-{worker_id}-{cluster._counter}", argv, env, cluster.tmp_path / f"{worker_id}.log")
    proc.addr = worker_id
    cluster.services.append(proc)
    return proc


@contextlib.asynccontextmanager
async def http_target(host: str) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, host, port).start()
    try:
        yield f"http://{host}:{port}/hook"
    finally:
        await runner.cleanup()


# -- the work ----------------------------------------------------------------------------------------


def one_off(i: int, url: str) -> tuple[str, dict[str, Any], int]:
    """(type, payload, max_attempts) of the i-th one-off task: a fixed mix."""
    kind = i % 20
    if kind < 11:
        return "internal", {"function": "zephyr.noop"}, 5
    if kind < 14:
        return "internal", {"function": "zephyr.sleep", "kwargs": {"seconds": random.uniform(0.2, 2.0)}}, 5
    if kind < 16:
        return "http", {"url": url, "method": "GET"}, 8
    if kind < 18:
        return "shell", {"command": "echo chaos; sleep 0.1"}, 5
    return "internal", {"function": "zephyr.fail", "kwargs": {"message": "planned"}}, 2


async def submit(db: asyncpg.Pool, rows: Sequence[Row]) -> list[Any]:
    """Insert tasks the way the API's batch does (same statement, same NOTIFY), retrying through
    database outages; a retry that finds its ids taken had committed before its reply was lost."""
    ids = [new_id() for _ in rows]
    while True:
        try:
            await insert(db, ids, rows)
            return ids
        except asyncpg.UniqueViolationError:
            return ids
        except DB_DOWN:
            await asyncio.sleep(0.5)


async def insert(db: asyncpg.Pool, ids: list[Any], rows: Sequence[Row]) -> None:
    now = datetime.now(UTC)
    await db.fetch(
        QUERIES["insert_tasks_batch"],
        ids,
        [f"chaos-{i}" for i in range(len(rows))],
        [r[0] for r in rows],
        [json.dumps(r[1]) for r in rows],
        [json.dumps(r[3]) if r[3] else None for r in rows],
        [r[3] is not None for r in rows],
        [bool(r[3] and r[3].get("overlap")) for r in rows],
        [0] * len(rows),
        [r[2] for r in rows],
        [60.0] * len(rows),
        [now] * len(rows),
        [None] * len(rows),
        [None] * len(rows),
    )


async def submit_all(db: asyncpg.Pool, url: str, chaos: Chaos, stop: asyncio.Event) -> list[Any]:
    """One-off tasks in batches spread over SUBMIT_S; mid-run cancels of long sleeps along the way."""
    ids: list[Any] = []
    batches = 100
    per_batch = max(1, TASKS // batches)
    long_sleeps: list[Any] = []
    for b in range(batches):
        if stop.is_set():
            break
        rows: list[Row] = [(*one_off(b * per_batch + i, url), None) for i in range(per_batch)]
        ids += await submit(db, rows)
        if b % (batches // 4) == 1:
            sleeps: list[Row] = [
                ("internal", {"function": "zephyr.sleep", "kwargs": {"seconds": 60}}, 3, None)
            ]
            long_sleeps += await submit(db, sleeps * (CANCELLED // 4))
        if len(long_sleeps) >= CANCELLED // 4:
            await cancel_running(db, long_sleeps, chaos)
        await asyncio.sleep(SUBMIT_S / batches)
    await cancel_running(db, long_sleeps, chaos, wait=True)
    return ids + long_sleeps


async def cancel_running(
    db: asyncpg.Pool, candidates: list[Any], chaos: Chaos, *, wait: bool = False
) -> None:
    """Cancel the candidates that are running now (all of them, when `wait`: whatever state)."""
    for task_id in list(candidates):
        if task_id in chaos.cancels:
            continue
        with contextlib.suppress(*DB_DOWN):
            status = await db.fetchval("SELECT status FROM tasks WHERE id = $1", task_id)
            if status == "running" or (wait and status in ("pending", "running", "paused")):
                await taskstore.cancel_task(db, str(task_id))
                # After the commit: a run that starts later than this ran after the cancel.
                chaos.cancels[task_id] = datetime.now(UTC)


DB_DOWN = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, asyncpg.InternalClientError)


# -- the driver --------------------------------------------------------------------------------------


async def drive(
    cluster: Cluster,
    pg: EmbeddedPostgres,
    coordinators: list[Service],
    workers: dict[str, Service],
    start_again: dict[str, Callable[[], Service]],
    partitioned: str,
    host: OtherHost | None,
    chaos: Chaos,
) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()

    def note(text: str) -> None:
        chaos.events.append(f"{loop.time() - began:6.1f}s {text}")

    async def kill_workers() -> None:
        while loop.time() - began < DRIVE_S - 10:
            await asyncio.sleep(random.uniform(4, 7))
            victim = random.choice([w for w in workers if w != partitioned])
            workers[victim].kill()
            chaos.worker_kills.append((victim, time.time()))
            note(f"kill -9 worker {victim}")
            await asyncio.sleep(1)
            workers[victim] = start_again[victim]()

    async def faults() -> None:
        await asyncio.sleep(20)
        old = coordinators[0]
        note("kill -9 coordinator 1")
        old.kill()
        await asyncio.sleep(2)
        coordinators[0] = await start_coordinator(cluster, old.addr, "c1")
        note("coordinator 1 back")
        await asyncio.sleep(20)
        note("restart PostgreSQL")
        await asyncio.to_thread(pg.stop)
        await asyncio.to_thread(pg.start)
        note("PostgreSQL back")
        await asyncio.sleep(20)
        note(f"freeze PostgreSQL {2 * LEASE_S + 1:.0f}s")
        with frozen(pg.data_dir):
            await asyncio.sleep(2 * LEASE_S + 1)
        note("PostgreSQL thawed")
        await asyncio.sleep(20)
        note(
            f"cut worker {partitioned} off for {2 * LEASE_S + 1:.0f}s ({'veth down' if host else 'SIGSTOP'})"
        )
        if host is not None:
            ip("link", "set", host.link, "down")
            await asyncio.sleep(2 * LEASE_S + 1)
            ip("link", "set", host.link, "up")
        else:
            workers[partitioned].signal(signal.SIGSTOP)
            await asyncio.sleep(2 * LEASE_S + 1)
            workers[partitioned].signal(signal.SIGCONT)
        note(f"worker {partitioned} reconnected")

    await asyncio.gather(kill_workers(), faults())


# -- the test ----------------------------------------------------------------------------------------


async def test_chaos(tmp_path: Path) -> None:
    started = time.monotonic()
    data_dir = Path("/tmp") / f"i13-chaos-pg-{uuid.uuid4().hex[:8]}"
    pg = EmbeddedPostgres(data_dir)
    dsn = await asyncio.to_thread(pg.start)
    chaos = Chaos()
    try:  # the coordinators migrate the database as they start
        with partition_host() as host:
            await run_chaos(dsn, pg, tmp_path, host, chaos, started)
    finally:
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(data_dir, ignore_errors=True)


async def run_chaos(
    dsn: str, pg: EmbeddedPostgres, tmp_path: Path, host: OtherHost | None, chaos: Chaos, started: float
) -> None:
    env = {
        "ZEPHYR_LEASE_S": str(LEASE_S),
        "ZEPHYR_HEARTBEAT_S": str(HEARTBEAT_S),
        "ZEPHYR_CLUSTER_TOKEN": TOKEN,
        "ZEPHYR_ALLOW_PLAINTEXT": "1",
        "ZEPHYR_SHELL_ALLOW": "*",
        "ZEPHYR_WORKER_CONCURRENCY": str(CONCURRENCY),
        "ZEPHYR_RETRY_BASE_S": "0.2",
        "ZEPHYR_RETRY_CAP_S": "1",
        "ZEPHYR_DRAIN_S": "2",
    }
    address = "127.0.0.1" if host is None else host.host_ip
    async with Cluster(dsn, tmp_path, **env) as cluster, http_target(address) as url:
        db = await create_pool(dsn, min_size=1, max_size=4)
        try:
            coordinators = [
                await start_coordinator(cluster, f"127.0.0.1:{free_port()}", "c1"),
                await start_coordinator(cluster, f"{address}:{free_port()}", "c2"),
            ]
            both = f"{coordinators[0].addr},{coordinators[1].addr}"
            partitioned = "chaos-w4"
            start_again: dict[str, Callable[[], Service]] = {
                f"chaos-w{i}": functools.partial(start_worker, cluster, f"chaos-w{i}", both)
                for i in range(1, WORKERS)
            }
            # The partitioned worker reaches only the coordinator on the veth address.
            start_again[partitioned] = functools.partial(
                start_worker, cluster, partitioned, coordinators[1].addr, host=host
            )
            workers = {wid: start() for wid, start in start_again.items()}
            for proc in workers.values():
                await cluster.wait_worker_active(proc)
            end_at = datetime.now(UTC) + timedelta(seconds=DRIVE_S - 20)
            recurring_ids = await submit(
                db,
                [
                    (
                        "internal",
                        {"function": "zephyr.sleep", "kwargs": {"seconds": 0.5}},
                        5,
                        {
                            "every_s": 2,
                            "overlap": i % 2 == 0,
                            "end_at": end_at.isoformat().replace("+00:00", "Z"),
                        },
                    )
                    for i in range(RECURRING)
                ],
            )
            stop = asyncio.Event()
            submitter = asyncio.create_task(submit_all(db, url, chaos, stop))
            try:
                await drive(cluster, pg, coordinators, workers, start_again, partitioned, host, chaos)
            finally:
                stop.set()
                one_off_ids = await submitter
            settled = await settle(db)
            report = await check(db, chaos, set(recurring_ids), set(one_off_ids), cluster)
            report["wall time s"] = round(time.monotonic() - started, 1)
            report["settled"] = settled
            report["partition"] = "SIGSTOP of the worker" if host is None else "netns + veth"
            print("\nchaos events:\n  " + "\n  ".join(chaos.events))
            print("chaos counts: " + json.dumps(report, indent=2))
            assert settled, "tasks still unfinished after the settle phase"
        finally:
            await db.close()


async def settle(db: asyncpg.Pool) -> bool:
    """Wait (at most SETTLE_S) until no task is pending or running and no run is running."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        with contextlib.suppress(*DB_DOWN):
            busy = await db.fetchval(
                "SELECT (SELECT count(*) FROM tasks WHERE status IN ('pending', 'running'))"
                " + (SELECT count(*) FROM task_runs WHERE status = 'running')"
            )
            if busy == 0:
                return True
        await asyncio.sleep(1)
    return False


async def check(
    db: asyncpg.Pool, chaos: Chaos, recurring: set[Any], one_off: set[Any], cluster: Cluster
) -> dict[str, Any]:
    """Assert the invariants; return the counts."""
    tasks = {r["id"]: r for r in await db.fetch("SELECT id, status, recurring FROM tasks")}
    runs = await db.fetch(
        "SELECT id, task_id, attempt, status, worker_id, scheduled_for, started_at, finished_at,"
        " error->>'code' AS code FROM task_runs ORDER BY id"
    )
    by_task: dict[Any, list[Any]] = {}
    for run in runs:
        by_task.setdefault(run["task_id"], []).append(run)
    check_terminal(tasks, runs)
    check_one_success(tasks, by_task)
    check_firings(recurring, by_task)
    check_cancels(tasks, by_task, chaos)
    return counts(tasks, runs, by_task, chaos, cluster)


def check_terminal(tasks: dict[Any, Any], runs: Sequence[Any]) -> None:
    """Every task terminal (the recurring ones ended with their end_at), no run left running."""
    unfinished = {
        t: r["status"] for t, r in tasks.items() if r["status"] not in ("succeeded", "dead", "cancelled")
    }
    assert not unfinished, f"{len(unfinished)} tasks not terminal: {list(unfinished.items())[:5]}"
    still_running = [r["id"] for r in runs if r["status"] == "running"]
    assert not still_running, f"runs left running: {still_running[:5]}"


def check_one_success(tasks: dict[Any, Any], by_task: dict[Any, list[Any]]) -> None:
    """Every succeeded one-off task has exactly one succeeded run."""
    for task_id, task in tasks.items():
        if task["status"] == "succeeded" and not task["recurring"]:
            wins = [r for r in by_task.get(task_id, []) if r["status"] == "succeeded"]
            assert len(wins) == 1, f"task {task_id}: {len(wins)} succeeded runs"


def check_firings(recurring: set[Any], by_task: dict[Any, list[Any]]) -> None:
    """Every lost firing of a recurring task ran again (unless it used up its attempts)."""
    for task_id in recurring:
        task_runs = by_task.get(task_id, [])
        for lost in (r for r in task_runs if r["status"] == "lost"):
            again = [
                r for r in task_runs if r["scheduled_for"] == lost["scheduled_for"] and r["id"] > lost["id"]
            ]
            assert again or lost["attempt"] >= 5, f"firing {lost['scheduled_for']} of {task_id} dropped"


def check_cancels(tasks: dict[Any, Any], by_task: dict[Any, list[Any]], chaos: Chaos) -> None:
    """No cancelled task started a run after its cancel committed."""
    for task_id, cancelled_at in chaos.cancels.items():
        late = [r for r in by_task.get(task_id, []) if r["started_at"] > cancelled_at]
        assert not late, f"task {task_id} ran after its cancel: {late}"
        assert tasks[task_id]["status"] == "cancelled"


def executed(run: Any) -> bool:
    """Whether a run reached its worker (undelivered and handed-back runs never started)."""
    return run["code"] not in ("undelivered", "not_started")


def counts(
    tasks: dict[Any, Any], runs: Sequence[Any], by_task: dict[Any, list[Any]], chaos: Chaos, cluster: Cluster
) -> dict[str, Any]:
    lost = [r for r in runs if r["status"] == "lost"]
    rerun = sum(1 for r in lost if any(o["id"] > r["id"] for o in by_task[r["task_id"]]))
    twice = sum(
        1
        for task_id, task_runs in by_task.items()
        if not tasks[task_id]["recurring"]
        and sum(1 for r in task_runs if executed(r) and r["status"] == "lost") > 0
        and sum(1 for r in task_runs if executed(r)) > 1
    )
    statuses: dict[str, int] = {}
    for task in tasks.values():
        statuses[task["status"]] = statuses.get(task["status"], 0) + 1
    refused = sum(
        p.output().count("not running there") for p in cluster.services if p.name.startswith("coordinator")
    )
    return {
        "tasks": len(tasks),
        "tasks by status": statuses,
        "runs": len(runs),
        "lost runs": len(lost),
        "lost runs re-run": rerun,
        "refused late completions": refused,
        "one-off tasks with a lost run that had started, run again": twice,
        "cancelled mid-run": len(chaos.cancels),
        "worker kills": len(chaos.worker_kills),
        "longest kill-to-re-dispatch s": round(longest_redispatch(lost, by_task, chaos), 2),
    }


def longest_redispatch(lost: Sequence[Any], by_task: dict[Any, list[Any]], chaos: Chaos) -> float:
    """Longest time from a worker's kill -9 to the next run of a task whose run it held."""
    longest = 0.0
    for worker_id, killed in chaos.worker_kills:
        killed_at = datetime.fromtimestamp(killed, UTC)
        for r in lost:
            if r["worker_id"] == worker_id and r["started_at"] <= killed_at <= (
                r["finished_at"] or killed_at
            ):
                later = [o for o in by_task[r["task_id"]] if o["id"] > r["id"]]
                if later:
                    longest = max(longest, (later[0]["started_at"] - killed_at).total_seconds())
    return longest
