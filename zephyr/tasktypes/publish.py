"""`publish`: send `message` to a Redis channel or a PostgreSQL NOTIFY channel.

Payload: `channel` (1 to 63 printable ASCII characters, space included: PostgreSQL's identifier
limit is 63 bytes, which NOTIFY applies; ASCII keeps characters and bytes one, so /openapi.json
can state the limit exactly), `message` (a string is sent as is, anything else as JSON),
optional `backend`: `redis` (the worker's ZEPHYR_REDIS_URL) or `postgres` (its
ZEPHYR_PUBLISH_DATABASE_URL). Without `backend` a worker uses redis when it has it, else postgres.
A NOTIFY message is at most NOTIFY_MESSAGE_MAX_BYTES (checked by the worker: the backend, and so
the limit, may be chosen there).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator

from zephyr.tasktypes.fields import Model, Str, TaskType, any_case, text_or_secret

Backend = Literal["redis", "postgres"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
CHANNEL_MAX_BYTES = 63
CHANNEL_PATTERN = f"^[ -~]{{1,{CHANNEL_MAX_BYTES}}}$"
_CHANNEL = re.compile(CHANNEL_PATTERN)
NOTIFY_MESSAGE_MAX_BYTES = 7999
# Channels the cluster itself listens on (new work, cancels, drains): a task publishing there would
# steer the cluster (drain workers, cancel other tasks' runs). Refused in any case.
RESERVED_CHANNEL_PREFIX = "zephyr_"
_RESERVED = f"^(?:{any_case(RESERVED_CHANNEL_PREFIX)})"


def _backend_schema(schema: dict[str, Any]) -> None:
    schema.clear()
    schema.update(
        {
            "type": "string",
            "enum": list(BACKENDS),
            "description": "absent: redis when the worker has ZEPHYR_REDIS_URL, else postgres",
        }
    )


class PublishPayload(Model):
    """`publish`: send `message` to a Redis channel or a PostgreSQL NOTIFY channel."""

    channel: Annotated[
        Str,
        text_or_secret(pattern=CHANNEL_PATTERN, **{"not": {"pattern": _RESERVED}}),
    ]
    message: Any
    # Optional but not nullable: absent means the worker's choice (None here), null is refused.
    backend: Backend | None = Field(None, json_schema_extra=_backend_schema)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(value, str) and not _CHANNEL.fullmatch(value):
            raise ValueError(f"a channel name is 1 to {CHANNEL_MAX_BYTES} printable ASCII characters")
        if isinstance(value, str) and value.lower().startswith(RESERVED_CHANNEL_PREFIX):
            raise ValueError(
                f"channels named {RESERVED_CHANNEL_PREFIX}* are the cluster's own (new work, cancels, drains)"
            )
        return value

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_given(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("Input should be 'redis' or 'postgres'")
        return value


TASK_TYPE = TaskType("publish", PublishPayload)
