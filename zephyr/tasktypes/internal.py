"""`internal`: call a function a worker registered with `@zephyr.task(name)`.

Payload: `function` (a registered name: the rule of `zephyr.functions`), `args` (list), `kwargs`
(object).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from zephyr.functions import MAX_NAME_CHARS, NAME_PATTERN, is_function_name
from zephyr.tasktypes.fields import Model, TaskType


class InternalPayload(Model):
    """`internal`: call a function a worker registered with `@zephyr.task(name)`."""

    function: str = Field(max_length=MAX_NAME_CHARS, pattern=f"^{NAME_PATTERN}$")
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("function")
    @classmethod
    def _function(cls, value: str) -> str:
        if not is_function_name(value):
            raise ValueError("must be a dotted name such as `reports.build`")
        return value


TASK_TYPE = TaskType("internal", InternalPayload)
