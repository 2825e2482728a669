"""`shell`: `command` (a non-empty string run by /bin/sh -c) or `argv` (a non-empty list run
directly), exactly one; optional `env` (added to the environment) and `cwd`. Exit 0 is success."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import ConfigDict, Field, JsonValue, field_validator, model_validator

from zephyr.tasktypes.fields import Model, Str, TaskType, text_or_secret

# A command holds something besides ASCII white space (named one by one: `\S` means other things
# in Python than in the ECMA-262 regexes of JSON Schema, e.g. for U+001C).
_NOT_BLANK = re.compile(r"[^ \t\n\r\f\v]")
# Published: that, and no NUL anywhere (PostgreSQL cannot store it; the API refuses it in any string).
COMMAND_PATTERN = r"^[^\u0000]*[^ \t\n\r\f\v\u0000][^\u0000]*$"
_NULL: JsonValue = {"type": "null"}
# What `_one_of` checks, for /openapi.json: exactly one of the two is given and not null.
_ONE_OF_COMMAND_ARGV: list[JsonValue] = [
    {"required": [given], "properties": {given: {"not": _NULL}, other: _NULL}}
    for given, other in (("command", "argv"), ("argv", "command"))
]


class ShellPayload(Model):
    """`shell`: `command` (run by /bin/sh -c) or `argv`, exactly one; exit 0 is success."""

    model_config = ConfigDict(json_schema_extra={"oneOf": _ONE_OF_COMMAND_ARGV})

    command: Annotated[Str, text_or_secret(pattern=COMMAND_PATTERN)] | None = None
    argv: Annotated[list[Str], Field(min_length=1)] | None = None
    env: dict[str, Str] = Field(default_factory=dict)
    cwd: Str | None = None

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        if isinstance(value, str) and not _NOT_BLANK.search(value):
            raise ValueError("must be a non-empty string")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> ShellPayload:
        if (self.command is None) == (self.argv is None):
            raise ValueError("give exactly one of `command` or `argv`")
        return self


TASK_TYPE = TaskType("shell", ShellPayload)
