"""`zephyr probe SERVICE`: is the service in this container (or on this host) alive? Exit 0 or 1.

For container health checks, with the service's own settings from the environment: the
scheduler's GET /healthz on ZEPHYR_HTTP_ADDR, the coordinator's gRPC health check on
ZEPHYR_GRPC_ADDR, the worker's GET /healthz on ZEPHYR_METRICS_ADDR. A wildcard listen host is
probed on loopback. One line on stdout says what was probed and how it went.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from dataclasses import fields
from typing import Any

from zephyr import config as cfg
from zephyr.errors import ConfigError

PROBE_TIMEOUT_S = 3.0
LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("probe", help="health-check a service of this host (exit 0 when alive)")
    parser.add_argument("service", choices=("scheduler", "coordinator", "worker"))
    parser.set_defaults(func=run_probe)


def local_addr(config_cls: type[Any], name: str) -> cfg.Addr | None:
    """Where to reach, from this host, the address setting `name` of `config_cls` (from the
    environment, else its default). Only that setting is read: a probe judges liveness, not config."""
    setting = next(f for f in fields(config_cls) if f.name == name)
    raw = os.environ.get(setting.metadata["env"])
    default: cfg.Addr | None = setting.default  # type: ignore[assignment]  # every Addr setting has one
    try:
        addr = cfg.parse_addr(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{setting.metadata['env']}: invalid value: {exc}") from None
    return None if addr is None else cfg.Addr(LOOPBACK_FOR.get(addr.host, addr.host), addr.port)


def probe_http(url: str) -> str | None:
    """None when `url` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as resp:
            return None if resp.status == 200 else f"status {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(exc)


def probe_grpc(addr: cfg.Addr) -> str | None:
    """None when the gRPC health service says SERVING, else why not."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(str(addr)) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            return f"{exc.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"status {reply.status}"
    return None


def run_probe(args: argparse.Namespace) -> int:
    try:
        if args.service == "scheduler":
            target = f"http://{local_addr(cfg.SchedulerConfig, 'http_addr')}/healthz"
            problem = probe_http(target)
        elif args.service == "coordinator":
            addr = local_addr(cfg.CoordinatorConfig, "grpc_addr")
            assert addr is not None  # it has a default
            target = f"grpc health {addr}"
            problem = probe_grpc(addr)
        else:
            metrics = local_addr(cfg.WorkerConfig, "metrics_addr")
            if metrics is None:
                raise ConfigError("ZEPHYR_METRICS_ADDR: required to probe a worker (it serves /healthz)")
            target = f"http://{metrics}/healthz"
            problem = probe_http(target)
    except ConfigError as exc:
        print(f"zephyr probe: {exc.message}", file=sys.stderr)
        return 1
    print(f"zephyr probe: {target}: {problem or 'ok'}")
    return 1 if problem else 0
