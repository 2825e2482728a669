"""One validated, frozen configuration object per service.

Every setting is a `ZEPHYR_*` environment variable and also a command-line flag (the flag wins).
`load(SchedulerConfig, argv)` reads both, checks every value and raises ConfigError naming the
variable of the first bad one, so a service that cannot start says why in one line.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from zephyr import tls
from zephyr.errors import ConfigError

C = TypeVar("C")


@dataclass(frozen=True)
class Addr:
    """A host:port listen or connect address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True when only this machine can reach the address."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_addr(text: str) -> Addr:
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{text!r} is not host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return Addr(host.strip("[]") or "0.0.0.0", port)


def parse_addrs(text: str) -> tuple[Addr, ...]:
    addrs = tuple(parse_addr(part) for part in text.split(",") if part.strip())
    if not addrs:
        raise ValueError("at least one host:port is required")
    return addrs


def parse_positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"{text!r} must be a number above 0")
    return value


def parse_positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r} must be an integer of at least 1")
    return value


def parse_csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_dsn(text: str) -> str:
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("must start with postgresql://")
    return text


def parse_url(text: str) -> str:
    if "://" not in text:
        raise ValueError(f"{text!r} is not a URL")
    return text


def parse_regex(text: str) -> str:
    if text != "*":
        re.compile(text)
    return text


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0")


def parse_name_regex(text: str) -> str:
    """A regex matched against whole names (no `*` shorthand: name what may pass)."""
    re.compile(text)
    return text


def parse_log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError("must be 'text' or 'json'")
    return text


def setting(
    env: str,
    default: Any,
    parse: Callable[[str], Any] = str,
    help: str = "",
    *,
    secret: bool = False,
) -> Any:
    """Declare a config field read from `env` (and flag `--<env without ZEPHYR_, dashed>`)."""
    return field(
        default=default,
        repr=not secret,
        metadata={"env": env, "parse": parse, "help": help, "secret": secret},
    )


def tls_cert_setting(meaning: str) -> Any:
    return setting("ZEPHYR_TLS_CERT", None, str, f"PEM certificate file: {meaning}")


def tls_key_setting() -> Any:
    return setting("ZEPHYR_TLS_KEY", None, str, "PEM private key of ZEPHYR_TLS_CERT")


def tls_ca_setting(meaning: str) -> Any:
    return setting("ZEPHYR_TLS_CA", None, str, f"PEM CA file: {meaning}")


def allow_plaintext_setting() -> Any:
    return setting(
        "ZEPHYR_ALLOW_PLAINTEXT", False, parse_bool, "1: listen or connect beyond loopback without TLS"
    )


def require_secure(variable: str, addr: Addr, tls: bool, allow_plaintext: bool) -> None:
    """Beyond loopback, traffic is encrypted unless ZEPHYR_ALLOW_PLAINTEXT says otherwise."""
    if not addr.is_loopback and not tls and not allow_plaintext:
        raise ConfigError(
            f"{variable}: {addr} is not loopback and TLS is off; set ZEPHYR_TLS_CERT and ZEPHYR_TLS_KEY "
            "(workers: ZEPHYR_TLS_CA), or ZEPHYR_ALLOW_PLAINTEXT=1 to send tokens in clear"
        )


def warn_plaintext(logger: logging.Logger, addrs: Iterable[Addr | None], encrypted: bool) -> None:
    """Log a warning for each address beyond loopback that traffic reaches in clear."""
    for addr in addrs:
        if addr is not None and not addr.is_loopback and not encrypted:
            logger.warning(
                "%s is beyond loopback and TLS is off (ZEPHYR_ALLOW_PLAINTEXT=1): tokens travel in clear",
                addr,
            )


DEFAULT_WORKER_ID = "{hostname}-{pid}"


def expand_worker_id(template: str) -> str:
    """The worker id `template` stands for in this process: `{hostname}` and `{pid}` replaced.
    Replicas that share one setting (compose, a fleet certificate `*.SUFFIX`) get ids of their own
    with `{hostname}.SUFFIX`."""
    return template.replace("{hostname}", socket.gethostname()).replace("{pid}", str(os.getpid()))


@dataclass(frozen=True)
class CommonConfig:
    """Settings every service shares."""

    log_format: str = setting("ZEPHYR_LOG_FORMAT", "text", parse_log_format, "log format: text or json")
    log_level: str = setting("ZEPHYR_LOG_LEVEL", "INFO", str.upper, "log level")

    def validate(self) -> None:
        """Cross-field checks; raise ConfigError naming the variable."""


@dataclass(frozen=True)
class DatabaseConfig(CommonConfig):
    """Settings of the services that use Zephyr's database (workers never do)."""

    database_url: str | None = setting(
        "ZEPHYR_DATABASE_URL", None, parse_dsn, "PostgreSQL DSN (unset: `zephyr up` embeds one)", secret=True
    )

    def require_database(self) -> str:
        if not self.database_url:
            raise ConfigError("ZEPHYR_DATABASE_URL: required (or run `zephyr up`, which embeds PostgreSQL)")
        return self.database_url


@dataclass(frozen=True)
class SchedulerConfig(DatabaseConfig):
    """The HTTP API."""

    http_addr: Addr = setting("ZEPHYR_HTTP_ADDR", Addr("127.0.0.1", 8080), parse_addr, "listen address")
    api_tokens: tuple[str, ...] = setting(
        "ZEPHYR_API_TOKENS", (), parse_csv, "comma-separated bearer tokens", secret=True
    )
    max_body_bytes: int = setting(
        "ZEPHYR_MAX_BODY_BYTES", 1024 * 1024, parse_positive_int, "largest request body accepted"
    )
    db_pool_size: int = setting("ZEPHYR_DB_POOL_SIZE", 10, parse_positive_int, "database connections")
    tls_cert: str | None = tls_cert_setting("serve HTTPS")
    tls_key: str | None = tls_key_setting()
    allow_plaintext: bool = allow_plaintext_setting()

    def validate(self) -> None:
        if not self.http_addr.is_loopback and not self.api_tokens:
            raise ConfigError(
                f"ZEPHYR_HTTP_ADDR: {self.http_addr} is not loopback and ZEPHYR_API_TOKENS is unset; "
                "set tokens to listen beyond this machine"
            )
        require_secure("ZEPHYR_HTTP_ADDR", self.http_addr, bool(self.tls_cert), self.allow_plaintext)
        tls.check_pair(self.tls_cert, self.tls_key)


@dataclass(frozen=True)
class CoordinatorConfig(DatabaseConfig):
    """Dispatch, leases, retries, recurring tasks and the admin API."""

    grpc_addr: Addr = setting("ZEPHYR_GRPC_ADDR", Addr("127.0.0.1", 50051), parse_addr, "listen address")
    cluster_token: str | None = setting(
        "ZEPHYR_CLUSTER_TOKEN", None, str, "shared secret of workers and admin calls", secret=True
    )
    lease_s: float = setting(
        "ZEPHYR_LEASE_S", 10.0, parse_positive_float, "seconds of worker silence before its runs are lost"
    )
    heartbeat_s: float = setting(
        "ZEPHYR_HEARTBEAT_S", 2.0, parse_positive_float, "heartbeat interval asked of workers"
    )
    metrics_addr: Addr | None = setting(
        "ZEPHYR_METRICS_ADDR", None, parse_addr, "Prometheus /metrics listen address"
    )
    retry_base_s: float = setting(
        "ZEPHYR_RETRY_BASE_S", 1.0, parse_positive_float, "first retry backoff (exponential, full jitter)"
    )
    retry_cap_s: float = setting("ZEPHYR_RETRY_CAP_S", 300.0, parse_positive_float, "largest retry backoff")
    poll_s: float = setting(
        "ZEPHYR_POLL_S", 5.0, parse_positive_float, "fallback poll when no notification arrives"
    )
    retention_days: float = setting(
        "ZEPHYR_RETENTION_DAYS", 7.0, parse_positive_float, "finished runs and logs kept this long"
    )
    coordinator_id: str = setting("ZEPHYR_COORDINATOR_ID", "", str, "id (default: host-pid)")
    db_pool_size: int = setting("ZEPHYR_DB_POOL_SIZE", 10, parse_positive_int, "database connections")
    tls_cert: str | None = tls_cert_setting("serve gRPC (and /metrics) over TLS")
    tls_key: str | None = tls_key_setting()
    tls_ca: str | None = tls_ca_setting("require client certificates issued by it (mutual TLS)")
    allow_plaintext: bool = allow_plaintext_setting()

    def validate(self) -> None:
        if not self.grpc_addr.is_loopback and not self.cluster_token:
            raise ConfigError(
                f"ZEPHYR_GRPC_ADDR: {self.grpc_addr} is not loopback and ZEPHYR_CLUSTER_TOKEN is unset; "
                "set a token to listen beyond this machine"
            )
        if self.metrics_addr and not self.metrics_addr.is_loopback and not self.cluster_token:
            raise ConfigError(
                f"ZEPHYR_METRICS_ADDR: {self.metrics_addr} is not loopback and ZEPHYR_CLUSTER_TOKEN is unset"
            )
        secure = bool(self.tls_cert)
        require_secure("ZEPHYR_GRPC_ADDR", self.grpc_addr, secure, self.allow_plaintext)
        if self.metrics_addr:
            require_secure("ZEPHYR_METRICS_ADDR", self.metrics_addr, secure, self.allow_plaintext)
        tls.check_pair(self.tls_cert, self.tls_key)
        if self.tls_ca and not self.tls_cert:
            raise ConfigError("ZEPHYR_TLS_CA: mutual TLS needs TLS: set ZEPHYR_TLS_CERT and ZEPHYR_TLS_KEY")
        tls.check_ca(self.tls_ca)
        if self.heartbeat_s >= self.lease_s:
            raise ConfigError("ZEPHYR_LEASE_S: must be longer than ZEPHYR_HEARTBEAT_S")


@dataclass(frozen=True)
class WorkerConfig(CommonConfig):
    """Execution of assigned runs."""

    coordinators: tuple[Addr, ...] = setting(
        "ZEPHYR_COORDINATORS", (Addr("127.0.0.1", 50051),), parse_addrs, "coordinator addresses"
    )
    concurrency: int = setting("ZEPHYR_WORKER_CONCURRENCY", 100, parse_positive_int, "runs at once")
    imports: tuple[str, ...] = setting(
        "ZEPHYR_WORKER_IMPORTS", (), parse_csv, "modules registering internal functions"
    )
    worker_id: str = setting(
        "ZEPHYR_WORKER_ID",
        "",
        str,
        "worker id; {hostname} and {pid} are replaced (default: {hostname}-{pid})",
    )
    cluster_token: str | None = setting(
        "ZEPHYR_CLUSTER_TOKEN", None, str, "shared secret for the coordinator", secret=True
    )
    shell_allow: str | None = setting(
        "ZEPHYR_SHELL_ALLOW", None, parse_regex, "regex of allowed shell commands, or *"
    )
    shell_env_allow: str | None = setting(
        "ZEPHYR_SHELL_ENV_ALLOW",
        None,
        parse_name_regex,
        "regex of extra env names a shell task may set (those that change what runs: BASH_ENV, LD_*, PATH...)",
    )
    http_allow_private: bool = setting(
        "ZEPHYR_HTTP_ALLOW_PRIVATE",
        True,
        parse_bool,
        "0: http tasks may not reach loopback, private, link-local or metadata addresses",
    )
    smtp_url: str | None = setting(
        "ZEPHYR_SMTP_URL", None, parse_url, "smtp://user:pass@host:port", secret=True
    )
    redis_url: str | None = setting("ZEPHYR_REDIS_URL", None, parse_url, "Redis for publish", secret=True)
    publish_database_url: str | None = setting(
        "ZEPHYR_PUBLISH_DATABASE_URL", None, parse_dsn, "PostgreSQL for publish NOTIFY", secret=True
    )
    heartbeat_s: float = setting("ZEPHYR_HEARTBEAT_S", 2.0, parse_positive_float, "heartbeat interval")
    drain_s: float = setting(
        "ZEPHYR_DRAIN_S", 30.0, parse_positive_float, "on SIGTERM, seconds running runs get to finish"
    )
    metrics_addr: Addr | None = setting(
        "ZEPHYR_METRICS_ADDR", None, parse_addr, "Prometheus /metrics listen address"
    )
    log_lines_per_run: int = setting(
        "ZEPHYR_LOG_LINES_PER_RUN", 10_000, parse_positive_int, "log lines kept per run"
    )
    tls_ca: str | None = tls_ca_setting("the coordinators' certificates must chain to it (TLS on)")
    tls_cert: str | None = tls_cert_setting("client certificate for mutual TLS (names the worker id)")
    tls_key: str | None = tls_key_setting()
    allow_plaintext: bool = allow_plaintext_setting()

    def validate(self) -> None:
        if self.metrics_addr and not self.metrics_addr.is_loopback and not self.cluster_token:
            raise ConfigError(
                f"ZEPHYR_METRICS_ADDR: {self.metrics_addr} is not loopback and ZEPHYR_CLUSTER_TOKEN is unset"
            )
        for addr in self.coordinators:
            require_secure("ZEPHYR_COORDINATORS", addr, bool(self.tls_ca), self.allow_plaintext)
        if self.metrics_addr:
            require_secure(
                "ZEPHYR_METRICS_ADDR", self.metrics_addr, bool(self.tls_cert), self.allow_plaintext
            )
        tls.check_pair(self.tls_cert, self.tls_key)
        if self.tls_cert and not self.tls_ca:
            raise ConfigError("ZEPHYR_TLS_CERT: a client certificate needs TLS: set ZEPHYR_TLS_CA")
        tls.check_ca(self.tls_ca)

    @property
    def client_tls(self) -> tls.ClientTls | None:
        """How the worker reaches coordinators over TLS (None: plaintext)."""
        return tls.ClientTls(self.tls_ca, self.tls_cert, self.tls_key) if self.tls_ca else None

    @property
    def effective_worker_id(self) -> str:
        return expand_worker_id(self.worker_id or DEFAULT_WORKER_ID)


def _flag(env: str) -> str:
    return "--" + env.removeprefix("ZEPHYR_").lower().replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """Add one flag per setting of `cls` to `parser` (values stay strings until `load`)."""
    for f in fields(cls):
        meta = f.metadata
        if "env" in meta:
            parser.add_argument(
                _flag(meta["env"]), dest=f.name, default=None, metavar=meta["env"], help=meta["help"]
            )


def load(
    cls: type[C],
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
) -> C:
    """Build `cls` from flags (when given) over environment over defaults, then validate it."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        meta = f.metadata
        if "env" not in meta:
            continue
        raw = getattr(args, f.name, None) if args is not None else None
        if raw is None:
            raw = env.get(meta["env"])
        if raw is None or raw == "":
            values[f.name] = f.default if f.default is not MISSING else None
            continue
        try:
            values[f.name] = meta["parse"](raw)
        except (ValueError, re.error) as exc:
            shown = "***" if meta["secret"] else repr(raw)
            raise ConfigError(f"{meta['env']}: invalid value {shown}: {exc}") from None
    config = cls(**values)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config
