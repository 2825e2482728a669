"""The `zephyr` client commands, as real processes, against a real scheduler process."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.cluster import Cluster
from zephyr.ids import new_id

TOKEN = "cli-test-token"


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with Cluster(database_url, tmp_path, ZEPHYR_API_TOKENS=TOKEN) as cluster:
        await cluster.start_scheduler()
        yield cluster


async def zephyr(
    cluster: Cluster, *args: str, token: str = TOKEN, stdin: bytes = b""
) -> tuple[int, str, str]:
    env = {**cluster.base_env, "ZEPHYR_URL": cluster.api_url, "ZEPHYR_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zephyr.cli.main", *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def zephyr_json(cluster: Cluster, *args: str) -> Any:
    code, out, err = await zephyr(cluster, *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_submit_show_list_cancel(cluster: Cluster) -> None:
    task = await zephyr_json(
        cluster, "submit", "internal", "--payload", '{"function": "zephyr.noop"}', "--name", "cli-task",
        "--delay", "3600", "--priority", "5",
    )  # fmt: skip
    assert (task["name"], task["priority"], task["schedule"]) == ("cli-task", 5, {"delay_s": 3600.0})

    code, out, _ = await zephyr(cluster, "task", task["id"])
    assert code == 0 and task["id"] in out and "cli-task" in out and "pending" in out

    listed = await zephyr_json(cluster, "tasks", "--name", "cli-task")
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]
    code, out, _ = await zephyr(cluster, "tasks")
    assert out.splitlines()[0].split() == ["ID", "NAME", "TYPE", "STATUS", "ATTEMPTS", "NEXT_RUN_AT"]
    assert task["id"] in out

    cancelled = await zephyr_json(cluster, "cancel", task["id"])
    assert cancelled["status"] == "cancelled"
    code, _, err = await zephyr(cluster, "cancel", task["id"])
    assert code == 1 and "conflict" in err


async def test_submit_from_a_file_on_stdin_and_errors(cluster: Cluster) -> None:
    body = {"type": "http", "payload": {"url": "http://127.0.0.1:9/"}, "schedule": {"cron": "0 9 * * *"}}
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    code, out, err = await zephyr(
        cluster,
        "submit",
        "--file",
        "-",
        "--json",
        "--traceparent",
        traceparent,
        stdin=json.dumps(body).encode(),
    )
    assert code == 0, err
    assert json.loads(out)["schedule"] == {"cron": "0 9 * * *"}
    assert json.loads(out)["traceparent"] == traceparent

    code, _, err = await zephyr(
        cluster, "submit", "internal", "--payload", '{"function": "f"}', "--cron", "bad"
    )
    assert code == 1
    assert "invalid_schedule" in err and "schedule.cron" in err
    code, _, err = await zephyr(cluster, "submit", "--payload", "{}")
    assert code == 2 and "type" in err
    code, _, err = await zephyr(cluster, "tasks", token="wrong")
    assert code == 1 and "unauthenticated" in err
    code, _, err = await zephyr(cluster, "task", str(uuid.uuid4()))
    assert code == 1 and "not_found" in err


async def test_retry_logs_workers_stats(cluster: Cluster) -> None:
    task = await zephyr_json(cluster, "submit", "internal", "--payload", '{"function": "zephyr.noop"}')
    conn = await asyncpg.connect(cluster.database_url)
    run_id = new_id()
    try:
        await conn.execute(
            "UPDATE tasks SET status = 'dead', attempts = 3 WHERE id = $1", uuid.UUID(task["id"])
        )
        await conn.execute(
            "INSERT INTO task_runs (id, task_id, attempt, status, worker_id, coordinator_id, scheduled_for,"
            " deadline_at, finished_at) VALUES ($1, $2, 3, 'failed', 'w1', 'c1', now(), now(), now())",
            run_id,
            uuid.UUID(task["id"]),
        )
        await conn.executemany(
            "INSERT INTO task_logs (run_id, ts, stream, line) VALUES ($1, now(), $2, $3)",
            [(run_id, "stdout", "hello"), (run_id, "stderr", "oops")],
        )
        await conn.execute(
            "INSERT INTO workers (id, host, capacity, task_types, lease_expires_at)"
            " VALUES ('cli-worker', 'h', 7, '{internal}', now() + interval '1 minute')"
        )
    finally:
        await conn.close()

    retried = await zephyr_json(cluster, "retry", task["id"])
    assert (retried["status"], retried["attempts"]) == ("pending", 0)

    code, out, _ = await zephyr(cluster, "logs", str(run_id))
    assert code == 0
    assert [line.split()[1:] for line in out.splitlines()] == [["stdout", "hello"], ["stderr", "oops"]]
    code, out, _ = await zephyr(cluster, "logs", str(run_id), "-f")  # the run has ended: prints and exits
    assert code == 0 and "hello" in out and "oops" in out

    workers = await zephyr_json(cluster, "workers")
    assert [w["id"] for w in workers["workers"]] == ["cli-worker"]
    code, out, _ = await zephyr(cluster, "workers")
    assert "cli-worker" in out and "internal" in out

    stats = await zephyr_json(cluster, "stats")
    assert stats["tasks"]["pending"] == 1 and stats["workers"] == 1
    code, out, _ = await zephyr(cluster, "stats")
    assert code == 0 and "queue_depth" in out


async def test_scheduler_stops_cleanly_on_sigterm_with_a_follower_attached(cluster: Cluster) -> None:
    task = await zephyr_json(cluster, "submit", "internal", "--payload", '{"function": "zephyr.noop"}')
    run_id = new_id()
    conn = await asyncpg.connect(cluster.database_url)
    try:
        await conn.execute(
            "INSERT INTO task_runs (id, task_id, attempt, status, worker_id, coordinator_id, scheduled_for,"
            " deadline_at) VALUES ($1, $2, 1, 'running', 'w1', 'c1', now(), now() + interval '1 hour')",
            run_id,
            uuid.UUID(task["id"]),
        )
        await conn.execute(
            "INSERT INTO task_logs (run_id, ts, stream, line) VALUES ($1, now(), 'stdout', 'hello')", run_id
        )
    finally:
        await conn.close()
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zephyr.cli.main", "logs", str(run_id), "-f",
        env={**cluster.base_env, "ZEPHYR_URL": cluster.api_url, "ZEPHYR_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    scheduler = cluster.services[0]
    assert follower.stdout is not None
    line = await asyncio.wait_for(follower.stdout.readline(), 20)  # connected: the line so far arrived
    assert b"hello" in line
    scheduler.signal(signal.SIGTERM)
    code = await asyncio.to_thread(scheduler.process.wait, 15)
    assert code == 0, scheduler.output()
    await asyncio.wait_for(follower.communicate(), 15)  # its stream ended with the server
