"""The built package works on its own: sdist and wheel from the checkout, the wheel installed into a
new virtualenv outside it, `zephyr up` run from another directory (embedded PostgreSQL) runs a task.

Before the build hook (setup.py) the installed services failed at import (no generated gRPC code)
and found no SQL (data/ lived outside the package)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import aiohttp
import pytest

import zephyr
from tests.support.up_process import UpProcess, clean_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 600


def run(argv: list[str], cwd: Path) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


@pytest.mark.timeout(900)
async def test_wheel_installed_alone_runs_a_task_from_another_directory(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    await asyncio.to_thread(run, [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], tmp_path)
    sdist = only(sorted(dist.glob("zephyr-*.tar.gz")))
    wheel = only(sorted(dist.glob("zephyr-*.whl")))

    # One version, in zephyr/__init__.py, is the distribution's version.
    assert wheel.name.startswith(f"zephyr-{zephyr.__version__}-"), wheel.name
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"setup.py", "proto/zephyr/v1/worker.proto", "data/migrations/0001_init.sql"} <= in_sdist
    assert not [name for name in in_sdist if "_pb2" in name], "generated code belongs to the build"
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    sql_sources = {f"zephyr/data/{p.parent.name}/{p.name}" for p in (ROOT / "data").glob("*/*.sql")}
    assert sql_sources <= in_wheel
    assert {"zephyr/v1/worker_pb2_grpc.py", "zephyr/v1/admin_pb2.py", "zephyr/v1/admin_pb2.pyi"} <= in_wheel

    env_dir = tmp_path / "venv"
    await asyncio.to_thread(venv.create, env_dir, with_pip=True)
    await asyncio.to_thread(run, [str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    imported = run(
        [str(env_dir / "bin" / "python"), "-c", "import zephyr; print(zephyr.__file__)"], elsewhere
    )
    assert imported.startswith(str(env_dir)), imported

    up = UpProcess.start([str(env_dir / "bin" / "zephyr")], ["--workers", "1"], tmp_path, cwd=elsewhere)
    try:
        await up.wait_for_workers(1, timeout=120)
        body = {"type": "internal", "payload": {"function": "zephyr.echo", "kwargs": {"from": "wheel"}}}
        task = await up.submit_and_wait(body)
        async with aiohttp.ClientSession() as session, session.get(f"{up.api_url}/") as resp:
            dashboard = (resp.status, resp.content_type)  # the scheduler's web UI: package files too
    finally:
        status, output = await asyncio.to_thread(up.stop)
    assert task["status"] == "succeeded", (task, output)
    assert task["last_run"]["result"] == {"from": "wheel"}, task
    assert dashboard == (200, "text/html"), dashboard
    assert status == 0, output
    assert (elsewhere / ".zephyr" / "pgdata").is_dir(), "the embedded database lives where `up` ran"
    assert "Traceback" not in output, output
