"""`zephyr up` wires its own parts, and `--autoscale MIN:MAX` follows the queue without killing runs.

Real `zephyr up` subprocesses against a test database, driven through the HTTP API."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.cluster import wait_until
from tests.support.up_process import UpProcess, clean_env

pytestmark = pytest.mark.slow

ZEPHYR = [sys.executable, "-m", "zephyr.cli.main"]
NOOP = {"type": "internal", "payload": {"function": "zephyr.noop"}}


@pytest.mark.parametrize(
    "settings",
    [{"ZEPHYR_COORDINATORS": "127.0.0.1:9"}, {"ZEPHYR_GRPC_ADDR": "127.0.0.1:0"}],
    ids=["stale-coordinators-in-the-shell", "coordinator-on-port-0"],
)
async def test_workers_dial_the_coordinator_up_started(
    database_url: str, tmp_path: Path, settings: dict[str, str]
) -> None:
    """The coordinator off 50051 (a free port, or port 0) with a stale or unset ZEPHYR_COORDINATORS:
    before the wiring the workers dialled that (or 50051) and retried forever, and nothing ran."""
    up = UpProcess.start(
        ZEPHYR, ["--workers", "2"], tmp_path, cwd=None, ZEPHYR_DATABASE_URL=database_url, **settings
    )
    try:
        await up.wait_for_workers(2, timeout=60)
        task = await up.submit_and_wait(NOOP)
        listening = re.search(r"gRPC 127\.0\.0\.1:(\d+)", up.output())
        assert listening is not None and listening.group(1) != "0", up.output()
        probes = {"ZEPHYR_HTTP_ADDR": up.api_url.removeprefix("http://")}
        probes["ZEPHYR_GRPC_ADDR"] = f"0.0.0.0:{listening.group(1)}"  # probed on loopback
        alive = [await probe(service, probes) for service in ("scheduler", "coordinator")]
    finally:
        status, output = await asyncio.to_thread(up.stop)
    dead = [await probe(service, probes) for service in ("scheduler", "coordinator")]
    assert task["status"] == "succeeded", (task, output)
    assert f"coordinators 127.0.0.1:{listening.group(1)}" in output
    assert status == 0, output
    assert [code for code, _out in alive] == [0, 0], alive
    assert [code for code, _out in dead] == [1, 1], dead


async def probe(service: str, settings: dict[str, str]) -> tuple[int, str]:
    """`zephyr probe SERVICE` with `settings`: its exit status and output."""
    result = await asyncio.to_thread(
        subprocess.run, [*ZEPHYR, "probe", service], env=clean_env(**settings), capture_output=True, text=True
    )
    return result.returncode, result.stdout + result.stderr


SCALED = re.compile(r"^zephyr up: autoscale [+-]\d+.*?: (\d+) workers", re.MULTILINE)


def autoscaled_count(up: UpProcess) -> int:
    """The worker count `up` last announced (the API lists a stopped worker until its lease ends)."""
    counts = SCALED.findall(up.output())
    return int(counts[-1]) if counts else 0


async def all_runs(api_url: str, task_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    async with aiohttp.ClientSession() as session:
        runs: dict[str, list[dict[str, Any]]] = {}
        for task_id in task_ids:
            async with session.get(f"{api_url}/v1/tasks/{task_id}/runs") as resp:
                runs[task_id] = (await resp.json())["runs"]
        return runs


@pytest.mark.timeout(180)
async def test_autoscale_follows_a_burst_and_drains_without_killing_runs(
    database_url: str, tmp_path: Path
) -> None:
    """1:3 workers of 2 slots each; a burst of 12 two-second tasks and one of 20 s. The burst waits
    for slots, so workers are added up to 3; once the queue is empty the idle ones are drained back
    to 1 (while the long run goes on, on a machine that is not too slow), and every task succeeds
    on its first run: no drain cut one short."""
    up = UpProcess.start(
        ZEPHYR,
        ["--autoscale", "1:3", "--autoscale-idle-s", "1"],
        tmp_path,
        ZEPHYR_DATABASE_URL=database_url,
        ZEPHYR_WORKER_CONCURRENCY="2",
    )
    timeline: list[tuple[float, int]] = []
    long_status_at_one_worker: list[str] = []
    try:
        await up.wait_for_workers(1, timeout=60)
        long_task = {"type": "internal", "payload": {"function": "zephyr.sleep", "kwargs": {"seconds": 20}}}
        short = {"type": "internal", "payload": {"function": "zephyr.sleep", "kwargs": {"seconds": 2}}}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{up.api_url}/v1/tasks/batch", json={"tasks": [long_task] + [short] * 12}) as resp,
        ):
            assert resp.status == 201, await resp.text()
            task_ids: list[str] = (await resp.json())["ids"]
        started = time.monotonic()

        async def scaled_back_after_all_done() -> bool:
            count = autoscaled_count(up)
            timeline.append((round(time.monotonic() - started, 1), count))
            runs = await all_runs(up.api_url, task_ids)
            if count == 1 and max(c for _t, c in timeline) > 1 and not long_status_at_one_worker:
                long_status_at_one_worker.append(runs[task_ids[0]][0]["status"])
            finished = all(r and r[0]["status"] != "running" for r in runs.values())
            return finished and count == 1

        await wait_until(
            scaled_back_after_all_done, timeout=120, what="the burst to finish and workers to drain"
        )
        runs = await all_runs(up.api_url, task_ids)
    finally:
        status, output = await asyncio.to_thread(up.stop)
    changes = [timeline[0]] + [p for i, p in enumerate(timeline[1:], 1) if p[1] != timeline[i - 1][1]]
    print(f"autoscale worker count over time (s, workers): {changes}")
    print(f"the long run when back at one worker: {long_status_at_one_worker}")
    assert max(count for _t, count in timeline) == 3, (changes, output)
    assert [len(r) for r in runs.values()] == [1] * 13, runs  # no run was cut short and re-run
    assert all(r[0]["status"] == "succeeded" for r in runs.values()), runs
    assert "autoscale -" in output and "(draining)" in output, output
    assert status == 0, output
