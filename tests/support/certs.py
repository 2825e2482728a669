"""A throwaway certificate authority for TLS tests, on the product's own CA (zephyr.certs).

    ca = TestCA(tmp_path / "ca")
    server = ca.issue(tmp_path / "server", "coordinator", ips=["127.0.0.1"])
    worker = ca.issue(tmp_path / "worker", "worker-1", client=True)
    expired = ca.issue(tmp_path / "old", "worker-1", client=True, expired=True)

Each issued certificate is written as `<stem>.crt` and `<stem>.key` (PEM); `ca.cert_path` is
the CA's certificate, the file ZEPHYR_TLS_CA names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from zephyr.certs import Authority


@dataclass(frozen=True)
class Issued:
    """Paths of one issued certificate and its key."""

    cert: Path
    key: Path


class TestCA:
    """A self-signed CA whose certificate is written to `directory/<name>.crt`."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "zephyr-test-ca") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.authority = Authority.create(name, days=30)
        self.cert_path = directory / f"{name}.crt"
        self.cert_path.write_bytes(self.authority.cert_pem)

    def issue(
        self,
        stem: Path,
        common_name: str,
        *,
        ips: Sequence[str] = (),
        dns: Sequence[str] = (),
        client: bool = False,
        expired: bool = False,
    ) -> Issued:
        """A leaf certificate for `common_name` (a server's by default, a client's with `client`,
        which names `common_name` as a DNS name too when given no other), with the given SAN
        addresses and names; `expired` ended yesterday."""
        now = datetime.now(UTC)
        valid = (now - timedelta(days=10), now - timedelta(days=1)) if expired else None
        names = [*dns, *ips] or ([common_name] if client else [])
        pem = self.authority.issue(
            names, server=not client, client=client, days=7, valid=valid, common_name=common_name
        )
        stem.parent.mkdir(parents=True, exist_ok=True)
        issued = Issued(stem.with_suffix(".crt"), stem.with_suffix(".key"))
        issued.cert.write_bytes(pem.cert)
        issued.key.write_bytes(pem.key)
        return issued
