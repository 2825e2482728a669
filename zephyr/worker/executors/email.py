"""`email` runs: one message through the SMTP server of ZEPHYR_SMTP_URL (aiosmtplib).

ZEPHYR_SMTP_URL is `smtp://[user:pass@]host[:port]` (plain, port 25), `smtps://…` (implicit TLS,
port 465) or `smtp://…?starttls=1` (STARTTLS required); `?from=addr` sets the default sender.
The payload is `zephyr.tasktypes.email.EmailPayload`, parsed once secrets are resolved. Bcc
recipients get the message but no header names them. The result lists `recipients`
and the `message_id`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from zephyr.tasktypes.email import EmailPayload, check_addresses
from zephyr.worker.executors.base import RunContext, RunFailure, invalid, parse_resolved, text, texts

DEFAULT_SENDER = "zephyr@localhost"
TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to send, parsed from ZEPHYR_SMTP_URL."""

    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool
    sender: str


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse ZEPHYR_SMTP_URL; ValueError says which part is wrong (never echoing the password)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("ZEPHYR_SMTP_URL: scheme must be smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("ZEPHYR_SMTP_URL: a host is required")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    use_tls = parts.scheme == "smtps"
    start_tls = query.get("starttls", "").lower() in TRUE
    if use_tls and start_tls:
        raise ValueError("ZEPHYR_SMTP_URL: smtps:// and starttls=1 exclude each other")
    try:
        port = parts.port or (465 if use_tls else 25)
    except ValueError:
        raise ValueError("ZEPHYR_SMTP_URL: the port is not a number") from None
    return SmtpTarget(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=use_tls,
        start_tls=start_tls,
        sender=query.get("from", DEFAULT_SENDER),
    )


class EmailExecutor:
    """Executes `email` payloads against one SMTP server."""

    type = "email"

    def __init__(self, smtp_url: str, *, tls_context: ssl.SSLContext | None = None) -> None:
        self.target = parse_smtp_url(smtp_url)
        self._tls_context = tls_context

    async def execute(self, ctx: RunContext, payload: dict[str, Any]) -> Any:
        mail = parse_resolved(EmailPayload, payload)
        to = texts(mail.to)
        cc = texts(mail.cc)
        bcc = texts(mail.bcc)
        subject = text(mail.subject)
        body = text(mail.body)
        html = text(mail.html) if mail.html is not None else None
        # The model checked every address given (secrets resolved); the default sender is ours.
        sender = text(mail.from_) if mail.from_ is not None else self.target.sender
        if mail.from_ is None:
            try:
                check_addresses(sender)
            except ValueError as exc:
                raise invalid("from", str(exc)) from None

        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(to)
        if cc:
            message["Cc"] = ", ".join(cc)
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        message.set_content(body)
        if html is not None:
            message.add_alternative(html, subtype="html")
        recipients = to + cc + bcc
        target = self.target
        try:
            await aiosmtplib.send(
                message,
                sender=sender,
                recipients=recipients,
                hostname=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                use_tls=target.use_tls,
                start_tls=target.start_tls if target.start_tls else False,
                tls_context=self._tls_context,
                timeout=ctx.timeout_s if ctx.timeout_s > 0 else None,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise RunFailure(f"recipients refused: {exc}", code="smtp_refused", retryable=False) from None
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            raise RunFailure(
                f"SMTP {exc.code}: {exc.message}", code="smtp_error", retryable=not permanent
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise RunFailure(f"{type(exc).__name__}: {exc}", code="smtp_error") from None
        return {"recipients": recipients, "message_id": message["Message-ID"]}

    async def close(self) -> None:
        """Nothing pooled: one SMTP connection per message."""
