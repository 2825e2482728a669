"""A worker killed with SIGKILL takes its shell commands with it (issue 13)."""

from __future__ import annotations

import signal
from pathlib import Path

import asyncpg
import pytest

from tests.support.cluster import Cluster, wait_until
from tests.support.fake_worker import insert_tasks
from tests.support.worker import process_alive

pytestmark = pytest.mark.slow


async def test_a_sigkilled_workers_shell_commands_die_with_it(
    database_url: str, db: asyncpg.Pool, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    # The shell forks a child of its own: a parent-death signal on the shell alone would miss it.
    command = f"sleep 300 & echo $! > {pid_file}; wait"
    async with Cluster(database_url, tmp_path) as cluster:
        await cluster.start_coordinator()
        worker = await cluster.start_worker(ZEPHYR_SHELL_ALLOW="*")
        await insert_tasks(db, type="shell", payload={"command": command})

        async def child_pid() -> int:
            text = pid_file.read_text().strip() if pid_file.exists() else ""
            return int(text) if text else 0

        pid = await wait_until(child_pid, what="the command's child started")
        assert process_alive(pid)
        worker.signal(signal.SIGKILL)
        worker.process.wait(10)

        async def child_gone() -> bool:
            return not process_alive(pid)

        # Before the fix the command ran on, orphaned, for its full 300 s.
        await wait_until(child_gone, timeout=10, what="the orphaned command killed")
