"""TLS and mutual TLS between real processes, the worker on another "host".

The coordinator listens on this namespace's end of a veth pair; workers run in their own network
namespace and reach it over that link, as on a second machine. Certificates come from a CA the
test makes. Every refusal must be told in the worker's own log in words that name the cause.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.support.certs import Issued, TestCA
from tests.support.cluster import Cluster, Service, free_port, wait_until
from tests.support.host_tools import require_root
from tests.support.netns import OtherHost, other_host

pytestmark = pytest.mark.slow

TOKEN = "cluster-tok-i14"
FAST = {"ZEPHYR_HEARTBEAT_S": "0.5", "ZEPHYR_LEASE_S": "3"}


@pytest.fixture
def host() -> Iterator[OtherHost]:
    require_root("a worker in its own network namespace")
    with other_host("i14") as made:
        yield made


def tls_env(issued: Issued) -> dict[str, str]:
    return {"ZEPHYR_TLS_CERT": str(issued.cert), "ZEPHYR_TLS_KEY": str(issued.key)}


def credentials(ca: TestCA, client: Issued | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        ca.cert_path.read_bytes(),
        client.key.read_bytes() if client else None,
        client.cert.read_bytes() if client else None,
    )


async def log_says(service: Service, *needles: str, timeout: float = 30) -> str:
    """Wait until the service's log holds every needle; the log."""

    async def found() -> str | None:
        text = service.output()
        return text if all(needle in text for needle in needles) else None

    result: str = await wait_until(found, timeout=timeout, what=f"{service.name} log saying {needles}")
    return result


def zephyr(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zephyr.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)


async def test_worker_on_another_host_over_tls(database_url: str, tmp_path: Path, host: OtherHost) -> None:
    ca = TestCA(tmp_path / "ca")
    wrong_ca = TestCA(tmp_path / "wrong", "not-the-zephyr-ca")
    server = ca.issue(tmp_path / "server", "coordinator", ips=[host.host_ip, "127.0.0.1"])
    expired = ca.issue(tmp_path / "expired", "coordinator", ips=[host.host_ip], expired=True)
    async with Cluster(database_url, tmp_path, **FAST) as cluster:
        api = await cluster.start_scheduler(tls_ca=str(ca.cert_path), **tls_env(server))
        coordinator = await cluster.start_coordinator(
            host.host_ip, credentials(ca), ZEPHYR_CLUSTER_TOKEN=TOKEN, **tls_env(server)
        )
        worker_env = {"ZEPHYR_CLUSTER_TOKEN": TOKEN, "ZEPHYR_COORDINATORS": coordinator.addr}
        good = await cluster.start_worker(
            True, host.exec_prefix, ZEPHYR_WORKER_ID="remote-1", ZEPHYR_TLS_CA=str(ca.cert_path), **worker_env
        )
        wrong = await cluster.start_worker(
            False, host.exec_prefix, ZEPHYR_TLS_CA=str(wrong_ca.cert_path), **worker_env
        )

        # The CLI submits over HTTPS, verifying the API against the CA; the remote worker runs it.
        cli_env = {"ZEPHYR_URL": api.addr, "ZEPHYR_TLS_CA": str(ca.cert_path)}
        payload = json.dumps({"function": "zephyr.echo", "kwargs": {"over": "tls"}})
        submitted = zephyr("submit", "internal", "--payload", payload, "--json", **cli_env)
        assert submitted.returncode == 0, submitted.stderr
        task_id = json.loads(submitted.stdout)["id"]

        async def succeeded() -> bool:
            shown = await asyncio.to_thread(zephyr, "task", task_id, "--json", **cli_env)
            return bool(json.loads(shown.stdout)["status"] == "succeeded")

        await wait_until(succeeded, timeout=60, what="the task to succeed on the remote worker")
        assert "registered with coordinator" in good.output()
        # Without the CA the CLI refuses the API's certificate, and says so.
        unverified = zephyr("tasks", "--json", ZEPHYR_URL=api.addr)
        assert unverified.returncode != 0
        assert "certificate verify failed" in unverified.stderr.lower()

        # A worker trusting another CA is refused by its own TLS check, and its log says why.
        await log_says(
            wrong, "does not verify against ZEPHYR_TLS_CA", "unable to get local issuer certificate"
        )
        # An expired coordinator certificate, likewise.
        stale_addr = f"{host.host_ip}:{free_port()}"
        stale = cluster.spawn(
            "coordinator", ZEPHYR_GRPC_ADDR=stale_addr, ZEPHYR_CLUSTER_TOKEN=TOKEN, **tls_env(expired)
        )
        await log_says(stale, "listening on")
        late = await cluster.start_worker(
            False,
            host.exec_prefix,
            ZEPHYR_TLS_CA=str(ca.cert_path),
            **{**worker_env, "ZEPHYR_COORDINATORS": stale_addr},
        )
        await log_says(late, "does not verify against ZEPHYR_TLS_CA", "certificate has expired")

        # grpcurl verifies with the CA file too; plaintext is refused by the TLS port.
        listed = await asyncio.to_thread(grpcurl, "-cacert", str(ca.cert_path), coordinator.addr, "list")
        assert "zephyr.v1.Admin" in listed.stdout, listed.stderr
        plain = await asyncio.to_thread(grpcurl, "-plaintext", coordinator.addr, "list")
        assert plain.returncode != 0


async def test_mutual_tls_checks_each_worker_certificate(
    database_url: str, tmp_path: Path, host: OtherHost
) -> None:
    ca = TestCA(tmp_path / "ca")
    stranger_ca = TestCA(tmp_path / "stranger", "stranger-ca")
    server = ca.issue(tmp_path / "server", "coordinator", ips=[host.host_ip])
    admin = ca.issue(tmp_path / "admin", "admin", client=True)
    certs = {
        "mtls-good": ca.issue(tmp_path / "good", "mtls-good", client=True),
        "mtls-expired": ca.issue(tmp_path / "old", "mtls-expired", client=True, expired=True),
        "mtls-impostor": ca.issue(tmp_path / "impostor", "mtls-someone-else", client=True),
        "mtls-stranger": stranger_ca.issue(tmp_path / "stranger-leaf", "mtls-stranger", client=True),
    }
    async with Cluster(database_url, tmp_path, **FAST) as cluster:
        coordinator = await cluster.start_coordinator(
            host.host_ip,
            credentials(ca, admin),
            ZEPHYR_CLUSTER_TOKEN=TOKEN,
            ZEPHYR_TLS_CA=str(ca.cert_path),
            **tls_env(server),
        )
        common = {
            "ZEPHYR_CLUSTER_TOKEN": TOKEN,
            "ZEPHYR_COORDINATORS": coordinator.addr,
            "ZEPHYR_TLS_CA": str(ca.cert_path),
        }
        workers = {
            worker_id: await cluster.start_worker(
                False, host.exec_prefix, ZEPHYR_WORKER_ID=worker_id, **common, **tls_env(issued)
            )
            for worker_id, issued in certs.items()
        }
        bare = await cluster.start_worker(False, host.exec_prefix, ZEPHYR_WORKER_ID="mtls-bare", **common)

        await cluster.wait_worker_active(workers["mtls-good"])
        await log_says(bare, "it requires a client certificate (mutual TLS) and this worker has none")
        await log_says(workers["mtls-expired"], "refused this worker's client certificate", "expired at")
        await log_says(
            workers["mtls-impostor"],
            "PERMISSION_DENIED",
            "register.worker_id 'mtls-impostor' is not a name of the client certificate",
            "mtls-someone-else",
        )
        await log_says(workers["mtls-stranger"], "refused this worker's client certificate", "not issued by")

        # Admin calls need a client certificate as well: grpcurl presents one.
        auth = ["-H", f"authorization: Bearer {TOKEN}", "-cacert", str(ca.cert_path)]
        listed = await asyncio.to_thread(
            grpcurl,
            *auth,
            "-cert",
            str(admin.cert),
            "-key",
            str(admin.key),
            coordinator.addr,
            "zephyr.v1.Admin/ListWorkers",
        )
        assert [w["id"] for w in json.loads(listed.stdout)["workers"]] == ["mtls-good"], listed.stderr
        anonymous = await asyncio.to_thread(grpcurl, *auth, coordinator.addr, "zephyr.v1.Admin/ListWorkers")
        assert anonymous.returncode != 0


async def test_a_worker_fleet_shares_one_certificate_under_ids_it_covers(
    database_url: str, tmp_path: Path
) -> None:
    """The compose file's scheme: `zephyr certs init`'s fleet certificate (`worker`, `*.worker`)
    on every replica, each registering as `<its own label>.worker`; no other id."""
    root = tmp_path / "tls"
    made = zephyr("certs", "init", str(root))
    assert made.returncode == 0, made.stderr
    coordinator_dir, fleet_dir = root / "coordinator", root / "worker"
    ca = root / "public" / "ca.crt"
    coordinator_pair = Issued(coordinator_dir / "tls.crt", coordinator_dir / "tls.key")
    health = grpc.ssl_channel_credentials(
        ca.read_bytes(), coordinator_pair.key.read_bytes(), coordinator_pair.cert.read_bytes()
    )
    async with Cluster(database_url, tmp_path, **FAST) as cluster:
        coordinator = await cluster.start_coordinator(
            "127.0.0.1",
            health,
            ZEPHYR_CLUSTER_TOKEN=TOKEN,
            ZEPHYR_TLS_CA=str(coordinator_dir / "ca.crt"),
            **tls_env(coordinator_pair),
        )
        fleet = {
            "ZEPHYR_CLUSTER_TOKEN": TOKEN,
            "ZEPHYR_COORDINATORS": coordinator.addr,
            "ZEPHYR_TLS_CA": str(fleet_dir / "ca.crt"),
            **tls_env(Issued(fleet_dir / "tls.crt", fleet_dir / "tls.key")),
        }
        replicas = [
            await cluster.start_worker(False, ZEPHYR_WORKER_ID="{hostname}-{pid}.worker", **fleet)
            for _ in range(2)
        ]
        for replica in replicas:
            replica.addr = f"{socket.gethostname()}-{replica.process.pid}.worker"
            await cluster.wait_worker_active(replica)
        outsiders = [
            await cluster.start_worker(False, ZEPHYR_WORKER_ID=worker_id, **fleet)
            for worker_id in ("gpu-box-1", "a.b.worker")
        ]
        for outsider in outsiders:
            await log_says(
                outsider, "PERMISSION_DENIED", f"register.worker_id '{outsider.addr}' is not a name"
            )
