"""A certificate authority for Zephyr's TLS and mutual TLS, made with `cryptography`.

    ca = Authority.create("zephyr-ca")
    coordinator = ca.issue("coordinator", names=["coordinator", "127.0.0.1"], server=True, client=True)
    fleet = ca.issue("worker", names=["worker", "*.worker"], server=True, client=True)
    coordinator.cert, coordinator.key   # PEM bytes

Names are DNS names or IP addresses (each goes into the subject alternative names; the first is
also the subject CN). `server` certificates may serve HTTPS and gRPC, `client` ones may be presented
to a coordinator that requires client certificates; a coordinator's health probe presents its own
certificate, so coordinators need both. Keys are ECDSA P-256, written unencrypted (PKCS#8): protect
them with file permissions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825  # what browsers and most TLS clients still accept for a leaf certificate
MAX_DAYS = 36500
MAX_NAME_CHARS = 253  # a DNS name's limit
BACKDATE = timedelta(hours=1)  # tolerate clocks a little behind the issuer's


@dataclass(frozen=True)
class Pem:
    """A certificate and its private key, PEM-encoded."""

    cert: bytes
    key: bytes


def subject_alternative_name(name: str) -> x509.GeneralName:
    """An IP address SAN for an address, a DNS SAN otherwise; ValueError for an unusable name."""
    if not name or len(name) > MAX_NAME_CHARS or any(c.isspace() for c in name) or not name.isascii():
        raise ValueError(f"{name!r} is not a DNS name or IP address")
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _common_name(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _check_days(days: int) -> None:
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days: {days} is not between 1 and {MAX_DAYS}")


class Authority:
    """A self-signed CA: its certificate and key, and the leaf certificates it issues."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, name: str, *, days: int = CA_DAYS, now: datetime | None = None) -> Authority:
        """A new CA whose subject CN is `name`, valid for `days` from `now`."""
        _check_days(days)
        now = now or datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _common_name(name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_pem: bytes, key_pem: bytes) -> Authority:
        """The CA of these PEM bytes; ValueError when they are not a CA certificate and its EC key."""
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an EC private key")
        if key.public_key() != cert.public_key():
            raise ValueError("the CA key does not match the CA certificate")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise ValueError("the certificate is not a CA certificate")
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def issue(
        self,
        names: Sequence[str],
        *,
        server: bool = True,
        client: bool = False,
        days: int = LEAF_DAYS,
        valid: tuple[datetime, datetime] | None = None,
        common_name: str | None = None,
    ) -> Pem:
        """A leaf certificate naming `names` (DNS names or IP addresses; the subject CN is
        `common_name`, else the first name), for serving (`server`) and/or for presenting to a
        coordinator (`client`), valid `days` from now, or over `valid` (not before, not after)."""
        if not names and not common_name:
            raise ValueError("names: a certificate needs at least one name")
        if not server and not client:
            raise ValueError("a certificate must be for a server, a client or both")
        alternative = [subject_alternative_name(name) for name in names]
        if valid is None:
            _check_days(days)
            now = datetime.now(UTC)
            valid = (now - BACKDATE, now + timedelta(days=days))
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_common_name(common_name or names[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if alternative:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))
