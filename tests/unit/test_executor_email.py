"""The email executor against a real SMTP server (aiosmtpd): plain, AUTH, STARTTLS, smtps."""

from __future__ import annotations

from email.message import Message
from pathlib import Path

import pytest

from tests.support.smtp import Mailbox, port_of, self_signed, start_smtp
from tests.support.worker import make_context
from zephyr.errors import TaskFailed
from zephyr.worker.executors.base import RunFailure
from zephyr.worker.executors.email import EmailExecutor, parse_smtp_url

PAYLOAD = {
    "to": ["a@example.com", "b@example.com"],
    "cc": "c@example.com",
    "bcc": ["hidden@example.com"],
    "subject": "Report",
    "body": "plain text",
    "html": "<p>html text</p>",
    "from": "sender@example.com",
}


def decoded_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)  # a leaf part decodes to bytes
    return payload.decode().strip()


async def test_text_and_html_to_cc_and_bcc_with_auth() -> None:
    mailbox = Mailbox()
    server = await start_smtp(mailbox, credentials=("user", "p@ss word"))
    try:
        executor = EmailExecutor(f"smtp://user:p%40ss%20word@127.0.0.1:{port_of(server)}")
        result = await executor.execute(make_context(), PAYLOAD)
    finally:
        server.close()
    assert result["recipients"] == ["a@example.com", "b@example.com", "c@example.com", "hidden@example.com"]
    (got,) = mailbox.received
    assert got.sender == "sender@example.com"
    assert sorted(got.recipients) == sorted(result["recipients"])
    msg = got.message
    assert msg["Subject"] == "Report"
    assert msg["To"] == "a@example.com, b@example.com"
    assert msg["Cc"] == "c@example.com"
    assert msg["Bcc"] is None and b"hidden@example.com" not in got.raw
    parts = {part.get_content_type(): decoded_text(part) for part in msg.walk() if not part.is_multipart()}
    assert parts == {"text/plain": "plain text", "text/html": "<p>html text</p>"}
    assert msg["Message-ID"] == result["message_id"]


async def test_wrong_password_fails_without_echoing_it() -> None:
    mailbox = Mailbox()
    server = await start_smtp(mailbox, credentials=("user", "right"))
    try:
        executor = EmailExecutor(f"smtp://user:wrong-pw-123@127.0.0.1:{port_of(server)}")
        with pytest.raises(RunFailure) as info:
            await executor.execute(make_context(), {"to": "a@example.com", "subject": "s", "body": "b"})
    finally:
        server.close()
    assert info.value.code == "smtp_error"
    assert "wrong-pw-123" not in str(info.value)
    assert mailbox.received == []


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
async def test_tls_modes(tmp_path: Path, mode: str) -> None:
    contexts = self_signed(tmp_path)
    if contexts is None:
        pytest.skip("openssl is not installed")
    server_ctx, client_ctx = contexts
    mailbox = Mailbox()
    server = await start_smtp(mailbox, tls_context=server_ctx, implicit_tls=mode == "smtps")
    url = (
        f"smtps://127.0.0.1:{port_of(server)}"
        if mode == "smtps"
        else f"smtp://127.0.0.1:{port_of(server)}?starttls=1&from=noreply@example.com"
    )
    try:
        await EmailExecutor(url, tls_context=client_ctx).execute(
            make_context(), {"to": "a@example.com", "subject": mode, "body": "b"}
        )
    finally:
        server.close()
    (got,) = mailbox.received
    assert got.message["Subject"] == mode
    if mode == "starttls":
        assert got.sender == "noreply@example.com"


def test_smtp_url_parsing() -> None:
    target = parse_smtp_url("smtps://u:p@mail.example.com")
    assert (target.host, target.port, target.use_tls, target.start_tls) == (
        "mail.example.com",
        465,
        True,
        False,
    )
    target = parse_smtp_url("smtp://mail.example.com?starttls=1")
    assert (target.port, target.start_tls, target.username) == (25, True, None)
    for bad in ("http://x", "smtp://", "smtps://h?starttls=1"):
        with pytest.raises(ValueError, match="ZEPHYR_SMTP_URL"):
            parse_smtp_url(bad)


async def test_bad_payloads_name_the_field() -> None:
    executor = EmailExecutor("smtp://127.0.0.1:1")
    for payload, field in (
        ({"subject": "s", "body": "b"}, "payload.to"),
        ({"to": [], "subject": "s", "body": "b"}, "payload.to"),
        ({"to": "not-an-address", "subject": "s", "body": "b"}, "payload.to"),
        ({"to": "a@b.c", "subject": "s"}, "payload.body"),
        ({"to": "a@b.c", "subject": "s", "body": "b", "cc": "a@b.c\nBcc: x@y.z"}, "payload.cc"),
        ({"to": "a@b.c", "subject": "s", "body": "b", "bcc": [1]}, "payload.bcc"),
        ({"to": "a@b.c", "subject": "s", "body": "b", "attachments": []}, "payload.attachments"),
    ):
        with pytest.raises(TaskFailed) as info:
            await executor.execute(make_context(), payload)
        assert str(info.value).startswith(field), info.value
        assert info.value.retryable is False
