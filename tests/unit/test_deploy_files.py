"""The container files checked offline: the compose file (and its observability profile) against
Compose's own parser, the Dockerfiles with hadolint and for the promises they keep. The images are
built and run for real in tests/e2e/test_containers.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from zephyr.config import expand_worker_id
from zephyr.tls import names_worker

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICES = ("scheduler", "coordinator", "worker")


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (it is a dev dependency)")
    return str(path)


def compose_config(*args: str, output: str = "yaml") -> str:
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), *args, "config", "--format", output],
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


def compose_services(*args: str) -> dict[str, Any]:
    services: dict[str, Any] = json.loads(compose_config(*args, output="json"))["services"]
    return services


def tls_volumes(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [
        (m["source"], m["target"], bool(m.get("read_only")))
        for m in service.get("volumes", [])
        if m["type"] == "volume" and m["source"].startswith("tls-")
    ]


def test_compose_services_speak_tls_each_with_its_own_certificate_only() -> None:
    services = compose_services("--profile", "observability")
    assert not [name for name, s in services.items() if "ZEPHYR_ALLOW_PLAINTEXT" in s.get("environment", {})]
    for name in SERVICES:
        env = services[name]["environment"]
        assert (env["ZEPHYR_TLS_CERT"], env["ZEPHYR_TLS_KEY"]) == (
            "/etc/zephyr/tls/tls.crt",
            "/etc/zephyr/tls/tls.key",
        )
        # Its own volume, read-only: no service holds another's key, none the CA's.
        assert tls_volumes(services[name]) == [(f"tls-{name}", "/etc/zephyr/tls", True)]
    for name in ("coordinator", "worker"):  # mutual TLS: both check the other against the CA
        assert services[name]["environment"]["ZEPHYR_TLS_CA"] == "/etc/zephyr/tls/ca.crt"
    holders = {name for name, s in services.items() for source, _, _ in tls_volumes(s) if source == "tls-ca"}
    assert holders == {"certs"}
    assert services["certs"]["entrypoint"][:3] == ["zephyr", "certs", "init"]
    for name in ("scheduler", "coordinator"):
        assert services[name]["depends_on"]["certs"]["condition"] == "service_completed_successfully"
    assert tls_volumes(services["prometheus"]) == [("tls-public", "/etc/prometheus/tls", True)]


def test_compose_worker_ids_are_covered_by_the_fleet_certificate() -> None:
    """What the coordinator checks: each replica's id against `zephyr certs init`'s worker names."""
    from zephyr.cli.certs import parts
    from zephyr.cli.main import build_parser

    args = build_parser().parse_args(["certs", "init", "/tls"])
    fleet = next(part for part in parts(args) if part.directory == "worker")
    template = compose_services()["worker"]["environment"]["ZEPHYR_WORKER_ID"]
    assert names_worker(set(fleet.names), expand_worker_id(template))
    assert not names_worker(set(fleet.names), "another-host")


def test_no_mount_lies_inside_a_read_only_bind_mount() -> None:
    """The engine cannot make a mount point inside a read-only bind mount ("read-only file system")."""
    for name, service in compose_services("--profile", "observability").items():
        mounts = service.get("volumes", [])
        targets = [PurePosixPath(m["target"]) for m in mounts] + [
            PurePosixPath(c["target"]) for c in service.get("configs", [])
        ]
        for outer in (m for m in mounts if m["type"] == "bind" and m.get("read_only")):
            inside = [t for t in targets if PurePosixPath(outer["target"]) in t.parents]
            assert not inside, f"{name}: {inside} inside read-only {outer['target']}"


def test_prometheus_scrapes_every_endpoint_over_verified_https() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"zephyr-scheduler", "zephyr-coordinator", "zephyr-worker"}
    for name, job in jobs.items():
        assert job["scheme"] == "https", name
        # Relative to /etc/prometheus, where the compose file mounts the CA's volume at tls/.
        assert (
            job["tls_config"]["ca_file"] == "tls/ca.crt" and "insecure_skip_verify" not in job["tls_config"]
        )
        assert job["tls_config"]["server_name"] == name.removeprefix("zephyr-")


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
