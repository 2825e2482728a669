"""The container files checked offline: the compose file (and its observability profile) against
Compose's own parser, the Dockerfiles with hadolint and for the promises they keep. The images are
built and run for real in tests/e2e/test_containers.py."""

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


def compose_config(*args: str) -> str:
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_compose_file_is_valid_with_and_without_the_observability_profile() -> None:
    extras = ("prometheus", "grafana", "mailcatcher")
    plain = compose_config()
    assert not [name for name in extras if f"\n  {name}:\n" in plain]
    full = compose_config("--profile", "observability")
    assert [name for name in extras if f"\n  {name}:\n" in full] == list(extras)
    for mounted in ("deploy/prometheus", "deploy/grafana/provisioning", "deploy/grafana/dashboards"):
        assert str(ROOT / mounted) in full


def test_shipped_workers_may_not_reach_private_addresses() -> None:
    assert 'ZEPHYR_HTTP_ALLOW_PRIVATE: "0"' in compose_config()


def stages(dockerfile: Path) -> list[str]:
    """The Dockerfile's build stages, each from its FROM line to the next."""
    text = dockerfile.read_text()
    starts = [i for i, line in enumerate(text.splitlines()) if line.startswith("FROM ")]
    lines = text.splitlines()
    return ["\n".join(lines[a:b]).strip() for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]


def test_the_three_dockerfiles_share_their_build_stage_and_runtime_base() -> None:
    """Identical instructions up to each service's own lines: built once, cached for the others."""
    first, *others = [stages(ROOT / f"{service}.Dockerfile") for service in SERVICES]
    for other in others:
        assert other[0] == first[0]
        shared = first[1].split("\nENV ZEPHYR_")[0]
        assert other[1].startswith(shared)


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_lints_clean_and_runs_its_service(service: str) -> None:
    dockerfile = ROOT / f"{service}.Dockerfile"
    result = subprocess.run([tool("hadolint"), str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    final = stages(dockerfile)[-1]
    assert f'ENTRYPOINT ["zephyr", "{service}"]' in final
    assert "USER 10001" in final and "HEALTHCHECK" in final
    # The runtime stage takes the installed wheel from the build stage, never the source tree.
    assert [line for line in final.splitlines() if line.startswith(("COPY", "ADD"))] == [
        "COPY --from=install /opt/zephyr /opt/zephyr"
    ]
    assert "pip wheel" in text
