"""`email`: one message through the worker's `ZEPHYR_SMTP_URL`.

Payload: `to` (one address or a non-empty list), `subject`, `body` (text), optional `html`, `from`,
`cc`, `bcc`. An address holds an `@` and no line break (checked here when given in clear, by the
worker once secrets are resolved).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from zephyr.tasktypes.fields import Model, Str, StrOrList, TaskType


def check_addresses(value: Any) -> None:
    """ValueError naming the first string of `value` (one or a list) that is not an address."""
    for address in value if isinstance(value, list) else [value]:
        if isinstance(address, str) and ("@" not in address or "\n" in address or "\r" in address):
            raise ValueError(f"{address!r} is not an email address")


class EmailPayload(Model):
    """`email`: one message through the worker's `ZEPHYR_SMTP_URL`."""

    to: StrOrList
    subject: Str
    body: Str
    html: Str | None = None
    from_: Str | None = Field(None, alias="from")
    cc: StrOrList | None = None
    bcc: StrOrList | None = None

    @field_validator("to", "from_", "cc", "bcc")
    @classmethod
    def _addresses(cls, value: Any) -> Any:
        check_addresses(value)
        return value


TASK_TYPE = TaskType("email", EmailPayload)
