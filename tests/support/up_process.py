"""`zephyr up` as a real subprocess, driven through its HTTP API.

    up = UpProcess.start([sys.executable, "-m", "zephyr.cli.main"], ["--workers", "1"], tmp_path)
    await up.wait_for_workers(1)
    task = await up.submit_and_wait({"type": "internal", "payload": {"function": "zephyr.noop"}})
    status, output = up.stop()

The environment is the test's minus every `ZEPHYR_*` variable (a new user's shell), plus
`extra_env`; the API listens on a free loopback port, the coordinator on another (never 50051).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.cluster import free_port, wait_until

STOP_TIMEOUT_S = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without Zephyr settings (and gRPC's fork setting), plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ZEPHYR_") and key != "GRPC_ENABLE_FORK_SUPPORT"
    }
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


async def submit_and_wait(api_url: str, body: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
    """POST a task and poll it until it is neither pending nor running; returns the task."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api_url}/v1/tasks", json=body) as resp:
            assert resp.status == 201, await resp.text()
            task = await resp.json()

        async def finished() -> dict[str, Any] | None:
            async with session.get(f"{api_url}/v1/tasks/{task['id']}") as resp:
                current: dict[str, Any] = await resp.json()
            return current if current["status"] not in ("pending", "running") else None

        result: dict[str, Any] = await wait_until(finished, timeout=timeout, what=f"task {task['id']}")
        return result


class UpProcess:
    """One `zephyr up` and its log file."""

    def __init__(self, process: subprocess.Popen[bytes], api_url: str, grpc_port: int, log_path: Path):
        self.process = process
        self.api_url = api_url
        self.grpc_port = grpc_port
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        command: list[str],
        args: list[str],
        tmp_path: Path,
        *,
        cwd: Path | None = None,
        **extra_env: str,
    ) -> UpProcess:
        """Run `command up args` with a fresh environment on free ports; output to tmp_path/up.log."""
        http_port, grpc_port = free_port(), free_port()
        ports = {"ZEPHYR_HTTP_ADDR": f"127.0.0.1:{http_port}", "ZEPHYR_GRPC_ADDR": f"127.0.0.1:{grpc_port}"}
        env = clean_env(**{**ports, **extra_env})
        log_path = tmp_path / "up.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, "up", *args], env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT
            )
        return cls(process, f"http://127.0.0.1:{http_port}", grpc_port, log_path)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def workers(self) -> list[dict[str, Any]]:
        """The API's worker list (empty while the API is not up yet)."""
        assert self.process.poll() is None, self.output()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.api_url}/v1/workers") as resp,
            ):
                if resp.status != 200:
                    return []
                listed: list[dict[str, Any]] = (await resp.json())["workers"]
                return listed
        except aiohttp.ClientError:
            return []

    async def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        """Until the API lists at least `count` workers."""

        async def enough() -> bool:
            return len(await self.workers()) >= count

        await wait_until(enough, timeout=timeout, what=f"zephyr up to serve with {count} workers")

    async def submit_and_wait(self, body: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
        return await submit_and_wait(self.api_url, body, timeout)

    def stop(self) -> tuple[int, str]:
        """SIGINT (Ctrl-C), wait; returns the exit status and everything `up` printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        return status, self.output()
