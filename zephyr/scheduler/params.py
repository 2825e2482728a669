"""Query parameters: each one declared once, with the JSON Schema `/openapi.json` publishes and the
check the handlers run, so the document and the server agree on what is valid.

`param.read(request)` returns the value (or the parameter's default when absent) and raises
ValidationError naming the parameter for anything its schema does not allow, an empty value
included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from zephyr.errors import ValidationError
from zephyr.scheduler.cursors import CURSOR_PATTERNS
from zephyr.scheduler.schemas import TASK_TYPES
from zephyr.taskstore import TASK_STATUSES

MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class QueryParam:
    """One optional query parameter: its schema, and the equivalent check."""

    name: str
    description: str
    schema: dict[str, Any]
    default: Any = None
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def read(self, request: web.Request) -> Any:
        text = request.query.get(self.name)
        if text is None:
            return self.default
        return self.parse(text)

    def parse(self, text: str) -> Any:
        schema = self.schema
        if "enum" in schema:
            if text not in schema["enum"]:
                raise ValidationError(
                    f"`{self.name}` must be one of {', '.join(schema['enum'])}", field=self.name
                )
            return text
        if schema.get("type") == "integer":
            low, high = schema["minimum"], schema["maximum"]
            # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
            if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
                raise ValidationError(
                    f"`{self.name}` must be an integer from {low} to {high}", field=self.name
                )
            return int(text)
        assert self._pattern is not None
        if not self._pattern.fullmatch(text):
            raise ValidationError(f"`{self.name}` is not valid here: {self.description}", field=self.name)
        return text

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": "query",
            "required": False,
            "description": self.description,
            "schema": self.schema,
        }


def enum_param(name: str, choices: tuple[str, ...], description: str) -> QueryParam:
    return QueryParam(name, description, {"type": "string", "enum": list(choices)})


def int_param(name: str, default: int, maximum: int, description: str) -> QueryParam:
    schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
    return QueryParam(name, description, schema, default)


def pattern_param(name: str, pattern: str, description: str) -> QueryParam:
    return QueryParam(name, description, {"type": "string", "pattern": pattern}, None, re.compile(pattern))


# Text without NUL (PostgreSQL cannot hold it), 1 to 200 characters.
NAME_PATTERN = f"^[^\\u0000]{{1,{MAX_NAME_CHARS}}}$"


def cursor_param(kind: str) -> QueryParam:
    return pattern_param("cursor", CURSOR_PATTERNS[kind], "`next_cursor` of the previous page")


def limit_param(default: int, maximum: int) -> QueryParam:
    return int_param("limit", default, maximum, f"items per page, 1 to {maximum}")


FOLLOW = enum_param(
    "follow", ("1", "true", "yes", "0", "false", "no"), "1: server-sent events until the run ends"
)


TASKS = {
    "status": enum_param("status", TASK_STATUSES, "only tasks with this status"),
    "type": enum_param("type", TASK_TYPES, "only tasks of this type"),
    "name": pattern_param("name", NAME_PATTERN, "only tasks with this name (1 to 200 characters)"),
    "limit": limit_param(100, 1000),
    "cursor": cursor_param("t"),
}
RUNS = {"limit": limit_param(100, 1000), "cursor": cursor_param("r")}
LOGS = {"limit": limit_param(1000, 10_000), "cursor": cursor_param("l"), "follow": FOLLOW}
FOLLOW_ON = ("1", "true", "yes")
ACTIVITY_WINDOW = int_param("window_s", 60, 3600, "the window, in seconds, 1 to 3600")
