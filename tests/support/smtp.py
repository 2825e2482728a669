"""A real SMTP server (aiosmtpd) on loopback that keeps what it receives, for email tests."""

from __future__ import annotations

import asyncio
import email
import shutil
import ssl
import subprocess
import warnings
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass
class Received:
    """One delivered message: envelope sender and recipients, and the parsed message."""

    sender: str
    recipients: list[str]
    message: Message
    raw: bytes


@dataclass
class Mailbox:
    """What the server got, plus an event set on every delivery."""

    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(raw), raw)
        )
        self.arrived.set()
        return "250 OK"


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """(server context, client context trusting it) for 127.0.0.1, or None without openssl."""
    if shutil.which("openssl") is None:
        return None
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def start_smtp(
    mailbox: Mailbox,
    *,
    credentials: tuple[str, str] | None = None,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
) -> asyncio.Server:
    """Serve SMTP on 127.0.0.1 (port in `server.sockets[0]`). With `credentials` AUTH is required;
    with `tls_context` STARTTLS is offered (or, with `implicit_tls`, the socket is TLS from the start)."""

    def authenticate(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and credentials is not None
            and (data.login.decode(), data.password.decode()) == credentials
        )
        return AuthResult(success=ok, handled=False)

    def factory() -> SMTP:
        # aiosmtpd warns about AUTH without TLS; here that is the point (a loopback test server).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return SMTP(
                mailbox,
                hostname="127.0.0.1",
                authenticator=authenticate if credentials else None,
                auth_required=credentials is not None,
                auth_require_tls=False,
                tls_context=None if implicit_tls else tls_context,
            )

    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, "127.0.0.1", 0, ssl=tls_context if implicit_tls else None)


def port_of(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port
