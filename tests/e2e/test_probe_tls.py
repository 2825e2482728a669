"""`zephyr probe` against services that speak TLS (the Kubernetes files' shape): the scheduler over
HTTPS, the coordinator's gRPC health over TLS verified against the CA given with `--ca`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.support.certs import TestCA
from tests.support.cluster import Cluster, free_port
from tests.support.up_process import clean_env

pytestmark = pytest.mark.slow


async def probe(service: str, settings: dict[str, str], *flags: str) -> tuple[int, str]:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "zephyr.cli.probe", service, *flags],
        env=clean_env(**settings),
        capture_output=True,
        text=True,
    )
    return result.returncode, result.stdout + result.stderr


async def test_probes_speak_tls_and_verify_the_coordinator(database_url: str, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    stranger = TestCA(tmp_path / "stranger", "stranger-ca")
    issued = ca.issue(
        tmp_path / "server", "zephyr-coordinator", dns=["zephyr-coordinator"], ips=["127.0.0.1"]
    )
    tls = {"ZEPHYR_TLS_CERT": str(issued.cert), "ZEPHYR_TLS_KEY": str(issued.key)}
    async with Cluster(database_url, tmp_path) as cluster:
        scheduler = await cluster.start_scheduler(tls_ca=str(ca.cert_path), **tls)
        coordinator = await cluster.start_coordinator(
            credentials=grpc.ssl_channel_credentials(ca.cert_path.read_bytes()),
            ZEPHYR_METRICS_ADDR=f"127.0.0.1:{free_port()}",
            **tls,
        )
        http = {"ZEPHYR_HTTP_ADDR": scheduler.addr.removeprefix("https://"), **tls}
        grpc_env = {"ZEPHYR_GRPC_ADDR": coordinator.addr, **tls}
        scheduler_probe = await probe("scheduler", http)
        coordinator_probe = await probe("coordinator", grpc_env, "--ca", str(ca.cert_path))
        stranger_probe = await probe("coordinator", grpc_env, "--ca", str(stranger.cert_path))
        plaintext_probe = await probe("coordinator", {"ZEPHYR_GRPC_ADDR": coordinator.addr})
    assert scheduler_probe[0] == 0 and "https://" in scheduler_probe[1], scheduler_probe
    assert coordinator_probe[0] == 0, coordinator_probe
    assert stranger_probe[0] == 1, stranger_probe  # the certificate is really verified
    assert plaintext_probe[0] == 1, plaintext_probe
