"""Real Zephyr services as subprocesses on free loopback ports, for end-to-end tests.

    async with Cluster(database_url, tmp_path) as cluster:
        api = await cluster.start_scheduler()
        await cluster.start_coordinator()
        await cluster.start_worker(ZEPHYR_WORKER_CONCURRENCY="10")

Every process writes its output to `tmp_path/<name>.log`; `Cluster.dump_logs()` returns it all
(tests print it on failure). Waits poll a real signal (HTTP /readyz, gRPC health, the `workers`
row), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import asyncpg

WAIT_S = 20.0


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: each socket stays bound until all are picked (picked one at a
    time, the kernel may hand out the same port twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


async def wait_until(
    check: Callable[[], Awaitable[Any]], *, timeout: float = WAIT_S, what: str = "condition"
) -> Any:
    """Poll `check` every 20 ms until it returns something truthy; raise TimeoutError after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def grpc_serving(addr: str, credentials: Any = None) -> bool:
    """Whether the gRPC health service at `addr` answers SERVING (False while it cannot be
    reached); over TLS with channel `credentials`."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = (
        grpc.aio.insecure_channel(addr) if credentials is None else grpc.aio.secure_channel(addr, credentials)
    )
    try:
        async with channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.aio.AioRpcError:
        return False


class Service:
    """One running service process."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.env = env
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.addr = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """kill -9, then reap."""
        self.signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit status."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.process.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Cluster:
    """Starts services against one database; stops them all on exit."""

    def __init__(self, database_url: str, tmp_path: Path, **env: str) -> None:
        self.database_url = database_url
        self.tmp_path = tmp_path
        # The services choose their own gRPC fork setting (zephyr/cli/main.py), not the test process's.
        inherited = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
        self.base_env = {
            **inherited,
            "ZEPHYR_DATABASE_URL": database_url,
            "ZEPHYR_PUBLISH_DATABASE_URL": database_url,
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.services: list[Service] = []
        self.api_url = ""
        self.coordinator_addrs: list[str] = []
        self._counter = 0

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop_all)
        if exc is not None:
            print(self.dump_logs())

    def spawn(self, service: str, wrap: Sequence[str] = (), **env: str) -> Service:
        """Start `zephyr <service>` (behind the `wrap` command, e.g. `ip netns exec NS`)."""
        self._counter += 1
        name = f"{service}-{self._counter}"
        merged = {**self.base_env, **env}
        argv = [*wrap, sys.executable, "-m", "zephyr.cli.main", service]
        proc = Service(name, argv, merged, self.tmp_path / f"{name}.log")
        self.services.append(proc)
        return proc

    async def start_scheduler(self, tls_ca: str | None = None, **env: str) -> Service:
        """A scheduler on a free loopback port; with `tls_ca` it serves HTTPS (ZEPHYR_TLS_CERT/KEY
        in `env`) and readiness is checked against that CA."""
        port = free_port()
        proc = self.spawn("scheduler", ZEPHYR_HTTP_ADDR=f"127.0.0.1:{port}", **env)
        proc.addr = f"{'https' if tls_ca else 'http'}://127.0.0.1:{port}"
        self.api_url = self.api_url or proc.addr
        ssl_context: ssl.SSLContext | bool = ssl.create_default_context(cafile=tls_ca) if tls_ca else True

        async def ready() -> bool:
            self._check_alive(proc)
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"{proc.addr}/readyz", ssl=ssl_context) as resp,
                ):
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until(ready, what=f"{proc.name} /readyz")
        return proc

    async def start_coordinator(
        self, host: str = "127.0.0.1", credentials: Any = None, **env: str
    ) -> Service:
        """A coordinator on a free port of `host`; with gRPC channel `credentials` (TLS settings
        in `env`) its health is checked over TLS."""
        port = int(env.pop("port", 0) or free_port())
        proc = self.spawn("coordinator", ZEPHYR_GRPC_ADDR=f"{host}:{port}", **env)
        proc.addr = f"{host}:{port}"
        self.coordinator_addrs.append(proc.addr)

        async def serving() -> bool:
            self._check_alive(proc)
            return await grpc_serving(proc.addr, credentials)

        await wait_until(serving, what=f"{proc.name} health")
        return proc

    async def start_worker(self, wait: bool = True, wrap: Sequence[str] = (), **env: str) -> Service:
        worker_id = env.pop("ZEPHYR_WORKER_ID", f"test-worker-{len(self.services) + 1}")
        env.setdefault("ZEPHYR_COORDINATORS", ",".join(self.coordinator_addrs))
        proc = self.spawn("worker", wrap, ZEPHYR_WORKER_ID=worker_id, **env)
        proc.addr = worker_id
        if wait:
            await self.wait_worker_active(proc)
        return proc

    async def wait_worker_active(self, proc: Service) -> None:
        async def active() -> bool:
            self._check_alive(proc)
            conn = await asyncpg.connect(self.database_url)
            try:
                status: str | None = await conn.fetchval(
                    "SELECT status FROM workers WHERE id = $1", proc.addr
                )
            finally:
                await conn.close()
            return status == "active"

        await wait_until(active, what=f"{proc.name} registered")

    def _check_alive(self, proc: Service) -> None:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.output()}")

    def stop_all(self) -> None:
        for proc in reversed(self.services):
            proc.stop()

    def dump_logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.output()}" for p in self.services)
