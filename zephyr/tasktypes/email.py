"""`email`: one message through the worker's `ZEPHYR_SMTP_URL`.

Payload: `to` (one address or a non-empty list), `subject`, `body` (text), optional `html`, `from`,
`cc`, `bcc`. An address holds an `@` and no line break (checked here when given in clear, by the
worker once secrets are resolved).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from zephyr.tasktypes.fields import Model, Str, StrOrList, TaskType, text_or_secret, texts_or_secrets

# What check_addresses requires of an address in clear, as /openapi.json publishes it.
# No NUL either: PostgreSQL cannot store it, and the API refuses it in any string.
ADDRESS_PATTERN = r"^[^\r\n\u0000]*@[^\r\n\u0000]*$"
Addresses = Annotated[StrOrList, texts_or_secrets(pattern=ADDRESS_PATTERN)]
Address = Annotated[Str, text_or_secret(pattern=ADDRESS_PATTERN)]


def check_addresses(value: Any) -> None:
    """ValueError naming the first string of `value` (one or a list) that is not an address."""
    for address in value if isinstance(value, list) else [value]:
        if isinstance(address, str) and ("@" not in address or "\n" in address or "\r" in address):
            raise ValueError(f"{address!r} is not an email address")


class EmailPayload(Model):
    """`email`: one message through the worker's `ZEPHYR_SMTP_URL`."""

    to: Addresses
    subject: Str
    body: Str
    html: Str | None = None
    from_: Address | None = Field(None, alias="from")
    cc: Addresses | None = None
    bcc: Addresses | None = None

    @field_validator("to", "from_", "cc", "bcc")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        check_addresses(value)
        return value


TASK_TYPE = TaskType("email", EmailPayload)
