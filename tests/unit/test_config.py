from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.certs import TestCA
from zephyr.config import Addr, CoordinatorConfig, SchedulerConfig, WorkerConfig, load, warn_plaintext
from zephyr.errors import ConfigError


def test_defaults_match_the_spec() -> None:
    scheduler = load(SchedulerConfig, environ={})
    assert scheduler.http_addr == Addr("127.0.0.1", 8080)
    worker = load(WorkerConfig, environ={})
    assert worker.concurrency == 100
    assert worker.coordinators == (Addr("127.0.0.1", 50051),)
    assert load(CoordinatorConfig, environ={}).lease_s == 10.0


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^ZEPHYR_WORKER_CONCURRENCY: invalid value 'lots'"):
        load(WorkerConfig, environ={"ZEPHYR_WORKER_CONCURRENCY": "lots"})


def test_secret_values_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load(SchedulerConfig, environ={"ZEPHYR_DATABASE_URL": "mysql://u:hunter2@h/db"})
    assert "hunter2" not in str(info.value)
    assert "ZEPHYR_DATABASE_URL" in str(info.value)


def test_non_loopback_without_token_refuses() -> None:
    with pytest.raises(ConfigError, match="ZEPHYR_API_TOKENS"):
        load(SchedulerConfig, environ={"ZEPHYR_HTTP_ADDR": "0.0.0.0:8080"})
    config = load(
        SchedulerConfig,
        environ={
            "ZEPHYR_HTTP_ADDR": "0.0.0.0:8080",
            "ZEPHYR_API_TOKENS": "tok-s3cret",
            "ZEPHYR_ALLOW_PLAINTEXT": "1",
        },
    )
    assert "tok-s3cret" not in repr(config)
    with pytest.raises(ConfigError, match="ZEPHYR_CLUSTER_TOKEN"):
        load(CoordinatorConfig, environ={"ZEPHYR_GRPC_ADDR": "10.1.2.3:50051"})


def test_beyond_loopback_needs_tls_or_an_explicit_plaintext() -> None:
    listen = {"ZEPHYR_GRPC_ADDR": "10.1.2.3:50051", "ZEPHYR_CLUSTER_TOKEN": "tok"}
    with pytest.raises(ConfigError, match=r"^ZEPHYR_GRPC_ADDR: .*TLS is off.*ZEPHYR_ALLOW_PLAINTEXT=1"):
        load(CoordinatorConfig, environ=listen)
    assert load(CoordinatorConfig, environ={**listen, "ZEPHYR_ALLOW_PLAINTEXT": "1"}).allow_plaintext
    api = {"ZEPHYR_HTTP_ADDR": "0.0.0.0:8080", "ZEPHYR_API_TOKENS": "tok"}
    with pytest.raises(ConfigError, match=r"^ZEPHYR_HTTP_ADDR: .*TLS is off"):
        load(SchedulerConfig, environ=api)
    with pytest.raises(ConfigError, match=r"^ZEPHYR_COORDINATORS: coordinator:50051 .*TLS is off"):
        load(WorkerConfig, environ={"ZEPHYR_COORDINATORS": "coordinator:50051"})
    with pytest.raises(ConfigError, match=r"^ZEPHYR_ALLOW_PLAINTEXT: invalid value 'maybe'"):
        load(WorkerConfig, environ={"ZEPHYR_ALLOW_PLAINTEXT": "maybe"})
    # Loopback stays plaintext without ceremony (`zephyr up`, grpcurl -plaintext).
    assert load(CoordinatorConfig, environ={}).tls_cert is None


def test_tls_files_are_checked_at_start(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    server = ca.issue(tmp_path / "server", "coordinator", ips=["10.1.2.3"])
    other = ca.issue(tmp_path / "other", "other", ips=["10.1.2.3"])
    listen = {"ZEPHYR_GRPC_ADDR": "10.1.2.3:50051", "ZEPHYR_CLUSTER_TOKEN": "tok"}
    pair = {"ZEPHYR_TLS_CERT": str(server.cert), "ZEPHYR_TLS_KEY": str(server.key)}
    config = load(CoordinatorConfig, environ={**listen, **pair, "ZEPHYR_TLS_CA": str(ca.cert_path)})
    assert config.tls_ca == str(ca.cert_path)
    with pytest.raises(ConfigError, match=r"^ZEPHYR_TLS_KEY: required with ZEPHYR_TLS_CERT"):
        load(CoordinatorConfig, environ={**listen, "ZEPHYR_TLS_CERT": str(server.cert)})
    with pytest.raises(ConfigError, match=r"^ZEPHYR_TLS_CERT: cannot read /nonexistent.crt"):
        load(CoordinatorConfig, environ={**listen, **pair, "ZEPHYR_TLS_CERT": "/nonexistent.crt"})
    with pytest.raises(ConfigError, match=r"^ZEPHYR_TLS_KEY: does not match ZEPHYR_TLS_CERT"):
        load(CoordinatorConfig, environ={**listen, **pair, "ZEPHYR_TLS_KEY": str(other.key)})
    with pytest.raises(ConfigError, match=r"^ZEPHYR_TLS_CA: .* is not a PEM file"):
        load(WorkerConfig, environ={"ZEPHYR_TLS_CA": __file__})
    with pytest.raises(ConfigError, match=r"^ZEPHYR_TLS_CERT: a client certificate needs TLS"):
        load(WorkerConfig, environ=pair)
    worker = load(
        WorkerConfig, environ={"ZEPHYR_COORDINATORS": "10.1.2.3:50051", "ZEPHYR_TLS_CA": str(ca.cert_path)}
    )
    assert worker.client_tls is not None and worker.client_tls.cert is None


def test_plaintext_beyond_loopback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.plaintext")
    with caplog.at_level(logging.WARNING, logger="test.plaintext"):
        warn_plaintext(logger, (Addr("127.0.0.1", 1), None, Addr("10.1.2.3", 50051)), encrypted=False)
        warn_plaintext(logger, (Addr("10.1.2.3", 8080),), encrypted=True)
    assert [r.getMessage() for r in caplog.records] == [
        "10.1.2.3:50051 is beyond loopback and TLS is off (ZEPHYR_ALLOW_PLAINTEXT=1): tokens travel in clear"
    ]
