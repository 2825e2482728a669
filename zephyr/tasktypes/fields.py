"""What every task type's payload module builds on: the model base, string fields that take secret
references, the type's registry entry, and the one way a pydantic error becomes a field and message.

Contracts:
- `Model`: unknown fields are errors, numbers must be finite.
- `Str` is a string or a secret reference `{"$secret": "NAME"}` (NAME: 1 to 128 letters, digits or
  underscores), kept as given: the API stores references, the worker resolves them from
  `ZEPHYR_SECRET_NAME` before its executor parses the payload with the same model, so an executor
  sees only strings there.
- `JSON_INTEGER` makes a strict `int` field take a float without a fraction (`515.0`) as the integer
  it equals, as JSON Schema's `integer` does; booleans and strings stay refused.
- `describe_error` turns a pydantic error into the field path and message both sides report.
- Nothing here imports aiohttp, gRPC or service code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainValidator, WithJsonSchema
from pydantic_core import ErrorDetails

SECRET_KEY = "$secret"
SECRET_NAME = re.compile(r"^[A-Za-z0-9_]{1,128}$")


class Model(BaseModel):
    """Base of every payload and request model: unknown fields rejected, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=False)


def whole_number(value: Any) -> Any:
    """`value`, or the int it equals when it is a float without a fraction."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Put after `Field(strict=True, ...)` on an int (before it, the bounds leave the JSON Schema): /openapi.json says `integer`, and JSON Schema counts
# 515.0 among the integers, so the API takes it (as 515).
JSON_INTEGER = BeforeValidator(whole_number)


@dataclass(frozen=True)
class TaskType:
    """One task type as the API and the worker know it: its name (the `type` of a task) and the
    model of its payload. Each `zephyr/tasktypes/<name>.py` defines one as `TASK_TYPE`."""

    name: str
    payload: type[Model]


def secret_or_text(value: Any) -> str | dict[str, str]:
    """A string, or a well-formed secret reference (as given); ValueError otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {SECRET_KEY}:
        name = value[SECRET_KEY]
        if isinstance(name, str) and SECRET_NAME.fullmatch(name):
            return {SECRET_KEY: name}
        raise ValueError("a secret name is 1 to 128 letters, digits or underscores")
    raise ValueError('must be a string or {"$secret": "NAME"}')


def _one_or_list(value: Any) -> str | dict[str, str] | list[str | dict[str, str]]:
    if isinstance(value, list):
        if not value:
            raise ValueError("must not be an empty list")
        items: list[str | dict[str, str]] = []
        for index, item in enumerate(value):
            try:
                items.append(secret_or_text(item))
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        return items
    return secret_or_text(value)


_SECRET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {SECRET_KEY: {"type": "string", "pattern": SECRET_NAME.pattern}},
    "required": [SECRET_KEY],
    "additionalProperties": False,
    "description": "resolved on the worker from ZEPHYR_SECRET_<NAME>",
}
_STR_SCHEMA: dict[str, Any] = {"anyOf": [{"type": "string"}, _SECRET_SCHEMA]}

# A string, or a secret reference where a string is expected (stored as given).
Str = Annotated[str | dict[str, str], PlainValidator(secret_or_text), WithJsonSchema(_STR_SCHEMA)]


def text_or_secret(**constraints: Any) -> WithJsonSchema:
    """The JSON Schema of a `Str` whose clear text obeys `constraints` (pattern, lengths...): the
    same rule the field's validator applies, published so that /openapi.json says it too."""
    return WithJsonSchema(_constrained(constraints))


def texts_or_secrets(**constraints: Any) -> WithJsonSchema:
    """The JSON Schema of a `StrOrList` whose clear texts obey `constraints`."""
    one = _constrained(constraints)
    return WithJsonSchema({"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]})


def _constrained(constraints: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [{"type": "string", **constraints}, _SECRET_SCHEMA]}


def any_case(*words: str) -> str:
    """A regex alternative matching each word in any case (JSON Schema patterns have no (?i))."""
    return "|".join(
        "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in w) for w in words
    )


# One such string or a non-empty list of them.
StrOrList = Annotated[
    str | dict[str, str] | list[str | dict[str, str]],
    PlainValidator(_one_or_list),
    WithJsonSchema({"anyOf": [_STR_SCHEMA, {"type": "array", "items": _STR_SCHEMA, "minItems": 1}]}),
]


# ---------------------------------------------------------------------------------------------
# Errors: one pydantic error -> (field path, message), the same for the API and the worker.


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """`("tasks", 17, "schedule", "cron")` -> `tasks[17].schedule.cron`."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = str(part).encode("utf-8", "replace").decode()  # a lone surrogate becomes "?"
            path += f".{name}" if path else name
    return path


def describe_error(error: ErrorDetails, prefix: Sequence[int | str] = ()) -> tuple[str, str]:
    """(field path, message) of one pydantic error, its location under `prefix`."""
    parts: list[int | str] = [*prefix, *error["loc"]]
    if error["type"] == "extra_forbidden":
        message = f"unknown field `{parts[-1]}`" if parts else "unknown field"
    else:
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return field_path(parts), message
