from __future__ import annotations

import pytest

from zephyr.config import Addr, CoordinatorConfig, SchedulerConfig, WorkerConfig, load
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
        SchedulerConfig, environ={"ZEPHYR_HTTP_ADDR": "0.0.0.0:8080", "ZEPHYR_API_TOKENS": "tok-s3cret"}
    )
    assert "tok-s3cret" not in repr(config)
    with pytest.raises(ConfigError, match="ZEPHYR_CLUSTER_TOKEN"):
        load(CoordinatorConfig, environ={"ZEPHYR_GRPC_ADDR": "10.1.2.3:50051"})
