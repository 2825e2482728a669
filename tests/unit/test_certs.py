"""`zephyr certs`: the CA and the cluster's certificates, checked with `cryptography` and `ssl`.

Also the rule the coordinator applies to a client certificate (`names_worker`) and the worker id
template, the two halves of the fleet identity the compose file uses."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from zephyr.cli.main import main
from zephyr.config import WorkerConfig, expand_worker_id
from zephyr.tls import names_worker


def names_of(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    alternative = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(getattr(name, "value", name)) for name in alternative]


def usages_of(path: Path) -> set[x509.ObjectIdentifier]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_init_makes_a_ca_and_a_certificate_per_service_that_chain_to_it(tmp_path: Path) -> None:
    root = tmp_path / "tls"
    assert main(["certs", "init", str(root), "--coordinator-name", "coord.example.com"]) == 0
    ca_pem = (root / "ca" / "ca.crt").read_bytes()
    assert (root / "public" / "ca.crt").read_bytes() == ca_pem
    assert sorted(p.name for p in (root / "public").iterdir()) == ["ca.crt"]  # no key for clients
    for part in ("scheduler", "coordinator", "worker"):
        directory = root / part
        assert (directory / "ca.crt").read_bytes() == ca_pem
        assert stat.S_IMODE((directory / "tls.key").stat().st_mode) == 0o600
        # The key matches the certificate and the certificate verifies against the CA.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            directory / "tls.crt", directory / "tls.key"
        )
        leaf = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    assert stat.S_IMODE((root / "ca" / "ca.key").stat().st_mode) == 0o600
    assert names_of(root / "scheduler" / "tls.crt") == ["scheduler", "localhost", "127.0.0.1", "::1"]
    assert names_of(root / "coordinator" / "tls.crt")[-1] == "coord.example.com"
    assert names_of(root / "worker" / "tls.crt") == ["worker", "*.worker"]
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    assert usages_of(root / "scheduler" / "tls.crt") == {server}
    # The coordinator's probe presents its certificate; workers serve /metrics with theirs.
    assert usages_of(root / "coordinator" / "tls.crt") == {server, client}
    assert usages_of(root / "worker" / "tls.crt") == {server, client}


def test_init_keeps_what_exists_and_reissues_only_what_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "tls"
    assert main(["certs", "init", str(root)]) == 0
    first = snapshot(root)
    assert main(["certs", "init", str(root)]) == 0
    assert snapshot(root) == first
    (root / "worker" / "tls.key").unlink()
    assert main(["certs", "init", str(root)]) == 0
    second = snapshot(root)
    changed = sorted(name for name in first if first[name] != second[name])
    assert changed == ["worker/tls.crt", "worker/tls.key"]
    # Without the CA, a new one is made and every certificate issued again from it.
    for path in (root / "ca").iterdir():
        path.unlink()
    assert main(["certs", "init", str(root)]) == 0
    third = snapshot(root)
    assert all(third[name] != second[name] for name in second)


def test_issue_adds_a_worker_certificate_from_the_ca(tmp_path: Path) -> None:
    root = tmp_path / "tls"
    assert main(["certs", "init", str(root)]) == 0
    out = tmp_path / "remote"
    assert main(["certs", "issue", str(root / "ca"), str(out), "gpu-box-1", "--usage", "client"]) == 0
    assert names_of(out / "tls.crt") == ["gpu-box-1"]
    assert usages_of(out / "tls.crt") == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert (out / "ca.crt").read_bytes() == (root / "ca" / "ca.crt").read_bytes()


def test_bad_input_is_refused_naming_it_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "tls"
    assert main(["certs", "init", str(root)]) == 0
    out = tmp_path / "bad"
    assert main(["certs", "issue", str(root / "ca"), str(out), "has space"]) == 1
    assert "'has space' is not a DNS name or IP address" in capsys.readouterr().err
    assert not out.exists()
    assert main(["certs", "issue", str(root / "ca"), str(out), "w1", "--days", "0"]) == 1
    assert "days: 0 is not between" in capsys.readouterr().err
    assert main(["certs", "issue", str(tmp_path / "nowhere"), str(out), "w1"]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert main(["certs", "issue", str(root / "ca"), str(out), "w1", "--owner", "zephyr"]) == 1
    assert "--owner: 'zephyr' is not UID or UID:GID" in capsys.readouterr().err
    # A CA directory whose certificate is a leaf's is refused, not used.
    (tmp_path / "leaf-ca").mkdir()
    (tmp_path / "leaf-ca" / "ca.crt").write_bytes((root / "scheduler" / "tls.crt").read_bytes())
    (tmp_path / "leaf-ca" / "ca.key").write_bytes((root / "scheduler" / "tls.key").read_bytes())
    assert main(["certs", "issue", str(tmp_path / "leaf-ca"), str(out), "w1"]) == 1
    assert "not a CA certificate" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("names", "worker_id", "allowed"),
    [
        ({"w1"}, "w1", True),
        ({"w1"}, "w2", False),
        ({"worker", "*.worker"}, "3f2a9c1b7d4e.worker", True),
        ({"worker", "*.worker"}, "worker", True),
        ({"*.worker"}, "a.b.worker", False),  # a wildcard covers one label only
        ({"*.worker"}, ".worker", False),
        ({"*.worker"}, "x.workers", False),
        ({"*.worker"}, "x.worker.evil", False),
        ({"*.worker"}, "*.worker", True),
        (set(), "w1", False),
    ],
)
def test_a_certificate_names_a_worker_exactly_or_by_one_wildcard_label(
    names: set[str], worker_id: str, allowed: bool
) -> None:
    assert names_worker(names, worker_id) is allowed


def test_worker_id_template_gives_each_replica_its_own_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "3f2a9c1b7d4e")
    assert expand_worker_id("{hostname}.worker") == "3f2a9c1b7d4e.worker"
    assert WorkerConfig(worker_id="{hostname}.worker").effective_worker_id == "3f2a9c1b7d4e.worker"
    assert WorkerConfig().effective_worker_id.startswith("3f2a9c1b7d4e-")
    assert WorkerConfig(worker_id="fixed").effective_worker_id == "fixed"
