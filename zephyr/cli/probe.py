"""`zephyr probe SERVICE`: is the service in this container (or on this host) alive? Exit 0 or 1.

For container health checks, with the service's own settings from the environment: the
scheduler's GET /healthz on ZEPHYR_HTTP_ADDR, the coordinator's gRPC health check on
ZEPHYR_GRPC_ADDR, the worker's GET /healthz on ZEPHYR_METRICS_ADDR. A wildcard listen host is
probed on loopback. One line on stdout says what was probed and how it went.

With ZEPHYR_TLS_CERT set the service speaks TLS: HTTP probes use HTTPS without verifying the
certificate (a liveness check of the local process sends nothing secret); the gRPC probe verifies
the coordinator's certificate against `--ca` (else ZEPHYR_TLS_CA, else the certificate itself), for
the first DNS name in it, and presents that certificate when the coordinator requires client
certificates (ZEPHYR_TLS_CA set).
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import fields
from pathlib import Path
from typing import Any

from zephyr import config as cfg
from zephyr.errors import ConfigError

PROBE_TIMEOUT_S = 3.0
LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("probe", help="health-check a service of this host (exit 0 when alive)")
    parser.add_argument("service", choices=("scheduler", "coordinator", "worker"))
    parser.add_argument("--ca", help="CA file the coordinator's TLS certificate chains to")
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
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S, context=unverified) as resp:
            return None if resp.status == 200 else f"status {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(exc)


def scheme() -> str:
    return "https" if os.environ.get("ZEPHYR_TLS_CERT") else "http"


def tls_channel(addr: cfg.Addr, cert: str, ca: str | None) -> Any:
    """A TLS channel to the local coordinator whose certificate is the file `cert`."""
    import grpc
    from cryptography import x509

    pem = Path(cert).read_bytes()
    parsed = x509.load_pem_x509_certificate(pem)
    try:
        names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        server_name = names.get_values_for_type(x509.DNSName)[0]
    except (x509.ExtensionNotFound, IndexError):
        server_name = str(parsed.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
    root = Path(ca or os.environ.get("ZEPHYR_TLS_CA") or cert).read_bytes()
    client: dict[str, bytes] = {}
    key = os.environ.get("ZEPHYR_TLS_KEY")
    if os.environ.get("ZEPHYR_TLS_CA") and key:
        client = {"private_key": Path(key).read_bytes(), "certificate_chain": pem}
    credentials = grpc.ssl_channel_credentials(root_certificates=root, **client)
    return grpc.secure_channel(
        str(addr), credentials, options=[("grpc.ssl_target_name_override", server_name)]
    )


def probe_grpc(addr: cfg.Addr, ca: str | None) -> str | None:
    """None when the gRPC health service says SERVING, else why not."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    cert = os.environ.get("ZEPHYR_TLS_CERT")
    with tls_channel(addr, cert, ca) if cert else grpc.insecure_channel(str(addr)) as channel:
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
            target = f"{scheme()}://{local_addr(cfg.SchedulerConfig, 'http_addr')}/healthz"
            problem = probe_http(target)
        elif args.service == "coordinator":
            addr = local_addr(cfg.CoordinatorConfig, "grpc_addr")
            assert addr is not None  # it has a default
            target = f"grpc health {addr}"
            problem = probe_grpc(addr, args.ca)
        else:
            metrics = local_addr(cfg.WorkerConfig, "metrics_addr")
            if metrics is None:
                raise ConfigError("ZEPHYR_METRICS_ADDR: required to probe a worker (it serves /healthz)")
            target = f"{scheme()}://{metrics}/healthz"
            problem = probe_http(target)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"zephyr probe: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    print(f"zephyr probe: {target}: {problem or 'ok'}")
    return 1 if problem else 0


def main() -> int:
    """`python -m zephyr.cli.probe SERVICE`: the probe without the rest of the CLI's imports."""
    parser = argparse.ArgumentParser(prog="zephyr probe")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(["probe", *sys.argv[1:]])
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
