"""The API with the whole cluster running (real scheduler, coordinator and worker processes):
logs followed live from a real shell run, and pause/resume/retry steering real dispatch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.cluster import Cluster, wait_until
from zephyr.client import AsyncClient

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    async with Cluster(database_url, tmp_path) as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        await cluster.start_worker(ZEPHYR_SHELL_ALLOW="*", ZEPHYR_WORKER_CONCURRENCY="4")
        async with AsyncClient(cluster.api_url) as client:
            yield client


async def wait_status(client: AsyncClient, task_id: str, *statuses: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        task = await client.get_task(task_id)
        return task if task["status"] in statuses else None

    result: dict[str, Any] = await wait_until(reached, what=f"task {task_id} to be {statuses}")
    return result


async def test_follow_a_live_shell_run_to_its_end(client: AsyncClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    # Prints two lines, waits until the test has seen them live, then prints two more and ends.
    script = f"echo one; echo two >&2; while [ ! -e {gate} ]; do sleep 0.05; done; echo three; echo four"
    task = await client.submit({"type": "shell", "payload": {"command": script}, "timeout_s": 60})
    running = await wait_status(client, task["id"], "running")
    run_id = running["last_run"]["id"]

    seen: list[tuple[str, str]] = []
    two_seen = asyncio.Event()

    async def follow() -> None:
        async for line in client.follow_logs(run_id):
            if line["stream"] != "system":
                seen.append((line["stream"], line["line"]))
            if len(seen) == 2:
                two_seen.set()

    follower = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(two_seen.wait(), 20)
    except TimeoutError:
        stored = (await client.logs(run_id))["logs"]
        state = await client.get_task(task["id"])
        outcome = follower.exception() if follower.done() else "still following"
        pytest.fail(f"follower saw {seen} in 20 s ({outcome!r}); stored lines: {stored}; task: {state}")
    assert sorted(seen) == [("stderr", "two"), ("stdout", "one")]
    assert not follower.done()  # the run is still going, so is the stream
    gate.touch()
    await asyncio.wait_for(follower, 20)  # ends by itself with the run
    assert [line for _, line in seen][2:] == ["three", "four"]
    done = await client.get_task(task["id"])
    assert done["status"] == "succeeded" and done["last_run"]["status"] == "succeeded"


async def test_paused_task_is_not_dispatched_until_resumed(client: AsyncClient, database_url: str) -> None:
    task = await client.submit(
        {"type": "internal", "payload": {"function": "zephyr.noop"}, "schedule": {"delay_s": 1}}
    )
    paused = await client.pause(task["id"])
    assert paused["status"] == "paused"
    # Wait until it is clearly due, then prove the coordinator passed it over: no run exists.
    conn = await asyncpg.connect(database_url)
    try:
        await wait_until(
            lambda: conn.fetchval("SELECT next_run_at < now() - interval '1 second' FROM tasks WHERE id = $1::uuid",
                                  task["id"]),
            what="task overdue",
        )  # fmt: skip
        # a second task submitted afterwards runs: the coordinator is alive and claiming
        other = await client.submit({"type": "internal", "payload": {"function": "zephyr.noop"}})
        await wait_status(client, other["id"], "succeeded")
        assert (await client.list_runs(task["id"]))["runs"] == []
    finally:
        await conn.close()
    await client.resume(task["id"])
    done = await wait_status(client, task["id"], "succeeded")
    assert done["attempts"] == 1


async def test_dead_task_retried_through_the_api_runs_again(client: AsyncClient) -> None:
    task = await client.submit(
        {
            "type": "internal",
            "payload": {"function": "zephyr.fail", "kwargs": {"message": "no"}},
            "max_attempts": 1,
        }
    )
    dead = await wait_status(client, task["id"], "dead")
    assert dead["last_run"]["status"] == "failed"
    await client.patch_task(task["id"], {"payload": {"function": "zephyr.echo", "kwargs": {"fixed": True}}})
    retried = await client.retry(task["id"])
    assert retried["attempts"] == 0
    done = await wait_status(client, task["id"], "succeeded")
    assert done["last_run"]["result"] == {"fixed": True}
    assert len((await client.list_runs(task["id"]))["runs"]) == 2
