"""TLS for the gRPC stream, the HTTP API and the metrics endpoints, from PEM files.

Who uses what (see SECURITY.md):
- scheduler and coordinator serve with ZEPHYR_TLS_CERT and ZEPHYR_TLS_KEY;
- a coordinator with ZEPHYR_TLS_CA requires every client to present a certificate issued by that
  CA (mutual TLS), and a worker's certificate must name its worker id (`peer_names`,
  `names_worker`);
- workers verify the coordinator against ZEPHYR_TLS_CA and present ZEPHYR_TLS_CERT/KEY when set;
  the CLI verifies the API's certificate against ZEPHYR_TLS_CA.

Files are read and checked when the service starts (`check_*` raise ConfigError naming the
variable), so a typo stops the service at once rather than at the first connection.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from zephyr.errors import ConfigError

# How long the worker's diagnosis of a refused connection may take (connect, handshake, first read).
PROBE_TIMEOUT_S = 3.0


def read_pem(path: str, variable: str) -> bytes:
    """The bytes of PEM file `path`; ConfigError naming `variable` when unreadable or not PEM."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{variable}: {path} is not a PEM file")
    return data


def check_pair(cert: str | None, key: str | None) -> None:
    """A certificate and its key go together and match (ConfigError otherwise)."""
    if bool(cert) != bool(key):
        missing = "ZEPHYR_TLS_KEY" if cert else "ZEPHYR_TLS_CERT"
        raise ConfigError(f"{missing}: required with {'ZEPHYR_TLS_CERT' if cert else 'ZEPHYR_TLS_KEY'}")
    if cert and key:
        read_pem(cert, "ZEPHYR_TLS_CERT")
        read_pem(key, "ZEPHYR_TLS_KEY")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ConfigError(f"ZEPHYR_TLS_KEY: does not match ZEPHYR_TLS_CERT {cert}: {exc}") from None


def check_ca(ca: str | None) -> None:
    """The CA file parses as one or more certificates (ConfigError otherwise)."""
    if ca:
        read_pem(ca, "ZEPHYR_TLS_CA")
        try:
            ssl.create_default_context(cafile=ca)
        except ssl.SSLError as exc:
            raise ConfigError(f"ZEPHYR_TLS_CA: {ca} holds no usable certificate: {exc}") from None


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """An HTTPS server context (TLS 1.2 or later) serving `cert`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def client_ssl_context(ca: str | None) -> ssl.SSLContext:
    """An HTTPS client context verifying servers against `ca` (the system's CAs without one)."""
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


def grpc_server_credentials(cert: str, key: str, ca: str | None) -> grpc.ServerCredentials:
    """The coordinator's credentials; with `ca`, clients must present a certificate it issued."""
    pair = [(read_pem(key, "ZEPHYR_TLS_KEY"), read_pem(cert, "ZEPHYR_TLS_CERT"))]
    if ca:
        return grpc.ssl_server_credentials(
            pair, root_certificates=read_pem(ca, "ZEPHYR_TLS_CA"), require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)


def peer_names(context: Any) -> set[str]:
    """The names a gRPC peer's verified client certificate carries: its subject CN and DNS SANs
    (empty when the peer presented none)."""
    auth = context.auth_context()
    names: set[str] = set()
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth.get(key, ()):
            names.add(value.decode() if isinstance(value, bytes) else str(value))
    return names


def names_worker(names: set[str], worker_id: str) -> bool:
    """Whether a client certificate carrying `names` may register as `worker_id`: one of its names
    is the id, or a wildcard name `*.SUFFIX` covers it the way a wildcard certificate covers host
    names (the id is one label without dots, then `.SUFFIX`). A wildcard certificate is a fleet's:
    every holder of its key may take any id it covers, and none outside it."""
    if worker_id in names:
        return True
    label, dot, suffix = worker_id.partition(".")
    return bool(label and dot and suffix and f"*.{suffix}" in names)


@dataclass(frozen=True)
class ClientTls:
    """A worker's TLS settings: verify the coordinator against `ca`, present `cert`/`key` if set."""

    ca: str
    cert: str | None = None
    key: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=read_pem(self.ca, "ZEPHYR_TLS_CA"),
            private_key=read_pem(self.key, "ZEPHYR_TLS_KEY") if self.key else None,
            certificate_chain=read_pem(self.cert, "ZEPHYR_TLS_CERT") if self.cert else None,
        )

    def explain(self, details: str, host: str, port: int) -> str | None:
        """Why a connection to a coordinator failed, in the words of its TLS settings, or None
        when TLS is not the reason. Blocking (it may open a probe connection): run in a thread.

        gRPC words a refused server certificate well (the verification error is in `details`),
        but a coordinator that refuses the worker's certificate just closes the connection after
        the handshake ("Socket closed"); a probe handshake then tells which case this is."""
        if "CERTIFICATE_VERIFY_FAILED" in details:
            reason = details.rsplit("CERTIFICATE_VERIFY_FAILED:", 1)[-1].strip().removesuffix(": OK")
            return (
                f"TLS: the coordinator's certificate does not verify against ZEPHYR_TLS_CA "
                f"{self.ca}: {reason}"
            )
        if "handshake" in details.lower():
            return f"TLS: the handshake with the coordinator failed (ZEPHYR_TLS_CA {self.ca})"
        if "Socket closed" not in details and "Connection reset" not in details:
            return None
        if not self._closed_after_handshake(host, port):
            return None
        if not self.cert:
            return (
                "TLS: the coordinator closed the connection after the handshake: it requires a client "
                "certificate (mutual TLS) and this worker has none; set ZEPHYR_TLS_CERT and ZEPHYR_TLS_KEY"
            )
        problem = certificate_time_problem(self.cert)
        if problem:
            return f"TLS: the coordinator refused this worker's client certificate: {problem}"
        return (
            f"TLS: the coordinator refused this worker's client certificate {self.cert} "
            "(not issued by the CA of the coordinator's ZEPHYR_TLS_CA?)"
        )

    def _closed_after_handshake(self, host: str, port: int) -> bool:
        """True when a TLS handshake with (host, port) succeeds and the server then hangs up
        instead of starting HTTP/2 (what a server that refused the client certificate does)."""
        context = ssl.create_default_context(cafile=self.ca)
        context.set_alpn_protocols(["h2"])
        if self.cert and self.key:
            context.load_cert_chain(self.cert, self.key)
        try:
            with (
                socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as raw,
                context.wrap_socket(raw, server_hostname=host) as conn,
            ):
                try:
                    return conn.recv(1) == b""
                except (ConnectionResetError, ssl.SSLError):  # an alert or a reset: refused too
                    return True
        except (OSError, ssl.SSLError):  # unreachable, or the handshake itself failed
            return False


def certificate_time_problem(path: str, now: datetime | None = None) -> str | None:
    """ "expired at …" / "not valid before …" for the certificate in `path`, or None."""
    from cryptography import x509  # only when diagnosing: keeps start-up light

    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    now = now or datetime.now(UTC)
    if cert.not_valid_after_utc < now:
        return f"{path} expired at {cert.not_valid_after_utc.isoformat()}"
    if cert.not_valid_before_utc > now:
        return f"{path} is not valid before {cert.not_valid_before_utc.isoformat()}"
    return None
