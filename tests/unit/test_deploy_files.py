"""The container files are checked offline: the compose file against Compose's own parser, the
Dockerfiles with hadolint. (No Docker engine runs here, so images are not built in tests.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICES = ("scheduler", "coordinator", "worker")


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (it is a dev dependency)")
    return str(path)


def test_compose_file_is_valid() -> None:
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_lints_clean_and_runs_its_service(service: str) -> None:
    dockerfile = ROOT / f"{service}.Dockerfile"
    result = subprocess.run([tool("hadolint"), str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'ENTRYPOINT ["zephyr", "{service}"]' in dockerfile.read_text()
