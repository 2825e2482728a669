"""Request models of the HTTP API: one schema per task type, validating every request and
generating `/openapi.json`.

Contracts:
- Unknown fields are errors everywhere (`extra="forbid"`), numbers must be finite.
- Wherever a payload takes a string, `{"$secret": "NAME"}` is accepted too and stored as given
  (the worker resolves it from `ZEPHYR_SECRET_NAME`).
- `validate_task(obj)` / `validate_batch(obj)` / `validate_patch(obj, type)` return validated
  models or raise `zephyr.errors.ValidationError` (or `InvalidSchedule`, `PayloadTooLarge`) whose
  `field` is a path such as `payload.url` or `tasks[17].schedule.cron`.
- What the database keeps of a validated model (its stored form) is `zephyr.taskstore`'s business.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NoReturn
from zoneinfo import available_timezones

import pydantic
import pydantic_core
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from zephyr.errors import InvalidSchedule, PayloadTooLarge, ValidationError, ZephyrError
from zephyr.schedule import is_valid_cron

MAX_NAME_CHARS = 200
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BATCH = 1000
MAX_PRIORITY = 1_000_000
MAX_ATTEMPTS = 1000
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_DELAY_S = 10 * 365 * 24 * 3600.0
MIN_EVERY_S = 0.01
TASK_TYPES = ("http", "email", "shell", "internal", "publish")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_SECRET_NAME = re.compile(r"^[A-Za-z0-9_]{1,128}$")
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class Model(BaseModel):
    """Base of every request model: unknown fields rejected, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=False)


def _secret_or_text(value: Any) -> str | dict[str, str]:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"$secret"}:
        name = value["$secret"]
        if isinstance(name, str) and _SECRET_NAME.match(name):
            return {"$secret": name}
        raise ValueError("a secret name is 1 to 128 letters, digits or underscores")
    raise ValueError('must be a string or {"$secret": "NAME"}')


def _one_or_list(value: Any) -> str | dict[str, str] | list[str | dict[str, str]]:
    if isinstance(value, list):
        if not value:
            raise ValueError("must not be an empty list")
        items: list[str | dict[str, str]] = []
        for index, item in enumerate(value):
            try:
                items.append(_secret_or_text(item))
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        return items
    return _secret_or_text(value)


def _status_codes(value: Any) -> int | list[int]:
    codes = value if isinstance(value, list) else [value]
    if not codes:
        raise ValueError("must not be an empty list")
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ValueError("must be a status code (100 to 599) or a list of them")
    return value  # type: ignore[no-any-return]


_SECRET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"$secret": {"type": "string", "pattern": _SECRET_NAME.pattern}},
    "required": ["$secret"],
    "additionalProperties": False,
    "description": "resolved on the worker from ZEPHYR_SECRET_<NAME>",
}
_STR_SCHEMA: dict[str, Any] = {"anyOf": [{"type": "string"}, _SECRET_SCHEMA]}

# A string, or a secret reference where a string is expected (stored as given).
Str = Annotated[str | dict[str, str], PlainValidator(_secret_or_text), WithJsonSchema(_STR_SCHEMA)]
# One such string or a non-empty list of them.
StrOrList = Annotated[
    str | dict[str, str] | list[str | dict[str, str]],
    PlainValidator(_one_or_list),
    WithJsonSchema({"anyOf": [_STR_SCHEMA, {"type": "array", "items": _STR_SCHEMA, "minItems": 1}]}),
]
StatusCodes = Annotated[
    int | list[int],
    PlainValidator(_status_codes),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 100, "maximum": 599},
                {"type": "array", "items": {"type": "integer", "minimum": 100, "maximum": 599}},
            ]
        }
    ),
]


class HttpPayload(Model):
    """`http`: one HTTP request; success when the status matches `expect_status` (default 2xx)."""

    method: str = Field("GET", description="HTTP method", max_length=16)
    url: Str
    headers: dict[str, Str] = Field(default_factory=dict)
    body: Any = Field(None, description="a string is sent as is, anything else as JSON")
    expect_status: StatusCodes | None = Field(None, description="accepted status code(s); default any 2xx")
    timeout_s: Annotated[float, Field(strict=True, gt=0, le=MAX_TIMEOUT_S)] | None = None
    follow_redirects: Annotated[bool, Field(strict=True)] | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if value.upper() not in HTTP_METHODS:
            raise ValueError(f"must be one of {', '.join(HTTP_METHODS)}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(value, str) and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an absolute http:// or https:// URL")
        return value


class EmailPayload(Model):
    """`email`: one message through the worker's `ZEPHYR_SMTP_URL`."""

    to: StrOrList
    subject: Str
    body: Str
    html: Str | None = None
    from_: Str | None = Field(None, alias="from")
    cc: StrOrList | None = None
    bcc: StrOrList | None = None


class ShellPayload(Model):
    """`shell`: `command` (run by /bin/sh -c) or `argv`, exactly one; exit 0 is success."""

    command: Str | None = None
    argv: Annotated[list[Str], Field(min_length=1)] | None = None
    env: dict[str, Str] = Field(default_factory=dict)
    cwd: Str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ShellPayload:
        if (self.command is None) == (self.argv is None):
            raise ValueError("give exactly one of `command` or `argv`")
        return self


@functools.lru_cache(maxsize=1024)
def _is_function_name(value: str) -> bool:
    # Cached: the tasks of a batch name the same few functions (names of at most 200 characters).
    return _FUNCTION_NAME.match(value) is not None


class InternalPayload(Model):
    """`internal`: call a function a worker registered with `@zephyr.task(name)`."""

    function: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("function")
    @classmethod
    def _function(cls, value: str) -> str:
        if len(value) > 200 or not _is_function_name(value):
            raise ValueError("must be a dotted name such as `reports.build`")
        return value


class PublishPayload(Model):
    """`publish`: send `message` to a Redis channel or a PostgreSQL NOTIFY channel."""

    channel: Str
    message: Any
    backend: Literal["redis", "postgres"] = "redis"

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(value, str) and not 1 <= len(value) <= 63:
            raise ValueError("a channel name is 1 to 63 characters")
        return value


PAYLOAD_MODELS: dict[str, type[Model]] = {
    "http": HttpPayload,
    "email": EmailPayload,
    "shell": ShellPayload,
    "internal": InternalPayload,
    "publish": PublishPayload,
}


# A date and a time of day, seconds included, with an optional offset (none: UTC). Numbers
# (pydantic would read epoch seconds) and bare dates are refused: the API takes RFC 3339 text.
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?")


def _instant_text(value: Any) -> Any:
    if not isinstance(value, str) or not _INSTANT.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time such as 2026-12-01T09:00:00Z")
    return value


Instant = Annotated[datetime, BeforeValidator(_instant_text)]


@functools.cache
def time_zones() -> frozenset[str]:
    """The IANA zone names a schedule may use (those of the system's or tzdata's database)."""
    return frozenset(available_timezones())


class Schedule(Model):
    """When a task runs. Exactly one of `at`, `delay_s`, `cron`, `every_s` (absent schedule: now).

    `cron` takes an IANA `timezone` (default UTC); the recurring forms (`cron`, `every_s`) take
    optional `start_at`, `end_at` and `overlap` (default false: a firing waits for the previous
    run to end).
    """

    at: Instant | None = None
    delay_s: Annotated[float, Field(strict=True, ge=0, le=MAX_DELAY_S)] | None = None
    cron: str | None = Field(None, description="5-field cron expression", examples=["*/5 * * * *"])
    timezone: str | None = Field(None, description="IANA zone of `cron`", examples=["Europe/Paris"])
    every_s: Annotated[float, Field(strict=True, ge=MIN_EVERY_S, le=MAX_DELAY_S)] | None = None
    start_at: Instant | None = None
    end_at: Instant | None = None
    overlap: Annotated[bool, Field(strict=True)] | None = None

    @field_validator("at", "start_at", "end_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) > 200 or not is_valid_cron(value):
            raise ValueError(
                f"{value!r} is not a valid 5-field cron expression (numbers and steps within each "
                "field's range: minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value not in time_zones():
            raise ValueError(f"{value!r} is not an IANA time zone")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Schedule:
        forms = [name for name in ("at", "delay_s", "cron", "every_s") if getattr(self, name) is not None]
        if len(forms) != 1:
            raise ValueError("give exactly one of `at`, `delay_s`, `cron` or `every_s`")
        if self.timezone is not None and self.cron is None:
            raise ValueError("`timezone` goes with `cron`")
        if forms[0] in ("at", "delay_s"):
            for name in ("start_at", "end_at", "overlap"):
                if getattr(self, name) is not None:
                    raise ValueError(f"`{name}` goes with `cron` or `every_s`")
        if self.start_at and self.end_at and self.end_at < self.start_at:
            raise ValueError("`end_at` is before `start_at`")
        return self


Name = Annotated[str, Field(max_length=MAX_NAME_CHARS)]
Priority = Annotated[
    int, Field(strict=True, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="higher runs first")
]
Attempts = Annotated[int, Field(strict=True, ge=1, le=MAX_ATTEMPTS)]
Timeout = Annotated[float, Field(strict=True, gt=0, le=MAX_TIMEOUT_S)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]


class _TaskBase(Model):
    name: Name = ""
    schedule: Schedule | None = None
    priority: Priority = 0
    max_attempts: Attempts = 3
    timeout_s: Timeout = 300.0
    idempotency_key: IdempotencyKey | None = None


class HttpTask(_TaskBase):
    """A task of type `http`."""

    type: Literal["http"]
    payload: HttpPayload


class EmailTask(_TaskBase):
    """A task of type `email`."""

    type: Literal["email"]
    payload: EmailPayload


class ShellTask(_TaskBase):
    """A task of type `shell`."""

    type: Literal["shell"]
    payload: ShellPayload


class InternalTask(_TaskBase):
    """A task of type `internal`."""

    type: Literal["internal"]
    payload: InternalPayload


class PublishTask(_TaskBase):
    """A task of type `publish`."""

    type: Literal["publish"]
    payload: PublishPayload


AnyTask = HttpTask | EmailTask | ShellTask | InternalTask | PublishTask
TaskCreate = Annotated[AnyTask, Field(discriminator="type")]


class BatchCreate(Model):
    """`POST /v1/tasks/batch`: up to 1000 tasks, created all or none."""

    tasks: Annotated[list[TaskCreate], Field(min_length=1, max_length=MAX_BATCH)]


class TaskPatch(Model):
    """`PATCH /v1/tasks/{id}`: the fields given are replaced; `schedule: null` means run now.

    `payload` is validated against the task's type.
    """

    schedule: Schedule | None = None
    payload: dict[str, Any] | None = None
    priority: Priority | None = None
    max_attempts: Attempts | None = None


_TASK_ADAPTER: TypeAdapter[AnyTask] = TypeAdapter(TaskCreate)
_TASKS_ADAPTER: TypeAdapter[list[AnyTask]] = TypeAdapter(list[TaskCreate])


# ---------------------------------------------------------------------------------------------
# Errors: pydantic's loc -> a field path, and our error classes.


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


def _message(error: Any) -> str:
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def raise_pydantic(
    exc: pydantic.ValidationError, prefix: tuple[int | str, ...] = (), *, tagged: bool = False
) -> NoReturn:
    """Raise the first error of `exc` as our ValidationError (InvalidSchedule under `schedule`).

    `tagged`: `exc` comes from the discriminated task union, whose loc starts with the type tag.
    """
    raise_error(exc.errors(include_url=False)[0], prefix, tagged=tagged)


def raise_error(error: ErrorDetails, prefix: tuple[int | str, ...] = (), *, tagged: bool = False) -> NoReturn:
    """Raise one pydantic error as our ValidationError; `prefix` and `tagged` as in `raise_pydantic`."""
    loc = list(error["loc"])
    if tagged and loc and loc[0] in TASK_TYPES:
        loc = loc[1:]
    parts: list[int | str] = [*prefix, *loc]
    if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        parts.append("type")
        message = f"`type` must be one of {', '.join(TASK_TYPES)}"
    elif error["type"] == "extra_forbidden":
        message = f"unknown field `{parts[-1]}`" if parts else "unknown field"
    else:
        message = _message(error)
    path = field_path(parts)
    if loc[:1] == ["schedule"]:
        raise InvalidSchedule(message, field=path)
    raise ValidationError(message, field=path or None)


# ---------------------------------------------------------------------------------------------
# Raw JSON checks that pydantic cannot do: things PostgreSQL's jsonb would refuse.


# Escapes that decode to text PostgreSQL refuses: NUL, and UTF-16 surrogates (lone ones cannot be
# stored; pairs are fine but are checked the slow way too).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def parse_json(body: bytes) -> Any:
    """Decode a request body; raise ValidationError (`invalid_json`) on anything but strict JSON,
    and ValidationError naming the field for what PostgreSQL could not store."""

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"{text} is out of range")
        return value

    try:
        value = json.loads(body, parse_constant=no_constants, parse_float=finite)
    except RecursionError:
        raise _invalid_json("the document is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid_json(str(exc)) from None
    # Raw UTF-8 cannot carry NUL-free-violations or surrogates past json.loads; only escapes
    # can, so the walk over every string runs only when the body holds such an escape.
    if _SUSPECT_ESCAPE.search(body):
        check_storable(value)
    return value


def _invalid_json(message: str) -> ValidationError:
    error = ValidationError(f"the body is not valid JSON: {message}")
    error.code = "invalid_json"
    return error


def check_storable(value: Any) -> None:
    """Reject what PostgreSQL cannot store in text or jsonb: NUL characters, lone surrogates,
    non-finite numbers; the error names the field."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, str):
            _check_text(item, loc)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValidationError("numbers must be finite", field=field_path(loc) or None)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, (*loc, key))
                stack.append((child, (*loc, key)))
        elif isinstance(item, list):
            stack.extend((child, (*loc, index)) for index, child in enumerate(item))


def check_text(text: str, field: str) -> None:
    """Raise ValidationError naming `field` if PostgreSQL could not store `text` (NUL, surrogates)."""
    if "\x00" in text:
        raise ValidationError("text must not contain NUL characters", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("text must be valid UTF-8", field=field) from None


def _check_text(text: str, loc: tuple[int | str, ...]) -> None:
    if "\x00" in text:
        raise ValidationError("text must not contain NUL characters", field=field_path(loc) or None)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("text must be valid Unicode", field=field_path(loc) or None) from None


# ---------------------------------------------------------------------------------------------
# Entry points.


def validate_task(obj: Any, prefix: tuple[int | str, ...] = ()) -> AnyTask:
    """Validate one task body; raises ValidationError/InvalidSchedule/PayloadTooLarge."""
    problem = _raw_task_problem(obj, prefix)
    if problem is not None:
        raise problem
    try:
        return _TASK_ADAPTER.validate_python(obj)
    except pydantic.ValidationError as exc:
        raise_pydantic(exc, prefix, tagged=True)


def validate_batch(obj: Any) -> list[AnyTask]:
    """Validate a batch body `{"tasks": [...]}` of 1 to 1000 tasks.

    The error raised is the one `validate_task` would raise for the first task that has one,
    checking the tasks one after another."""
    if not isinstance(obj, dict):
        raise ValidationError("the body is a JSON object with `tasks`")
    extra = sorted(set(obj) - {"tasks"})
    if extra:
        raise ValidationError(f"unknown field `{extra[0]}`", field=extra[0])
    tasks = obj.get("tasks")
    if not isinstance(tasks, list):
        raise ValidationError("`tasks` must be a list of tasks", field="tasks")
    if not tasks:
        raise ValidationError("`tasks` must hold at least one task", field="tasks")
    if len(tasks) > MAX_BATCH:
        raise PayloadTooLarge(f"a batch holds at most {MAX_BATCH} tasks", field="tasks")
    # One pydantic call for all the tasks costs less than one per task; the checks that come
    # before pydantic's run first, and the tasks before one failing them are validated first, so
    # the error is that of the first failing task all the same.
    for index, item in enumerate(tasks):
        problem = _raw_task_problem(item, ("tasks", index))
        if problem is not None:
            _validate_tasks(tasks[:index])
            raise problem
    return _validate_tasks(tasks)


def _raw_task_problem(obj: Any, prefix: tuple[int | str, ...]) -> ZephyrError | None:
    """What is wrong with a task body before pydantic looks at it: not an object, or a payload
    above the limit (measured first, so that a huge payload is not validated)."""
    if not isinstance(obj, dict):
        return ValidationError("a task is a JSON object", field=field_path(prefix) or None)
    payload = obj.get("payload")
    if payload is not None and payload_too_large(payload):
        return PayloadTooLarge(
            f"the payload is larger than {MAX_PAYLOAD_BYTES // 1024} KiB",
            field=field_path((*prefix, "payload")),
        )
    return None


def _validate_tasks(tasks: list[Any]) -> list[AnyTask]:
    """Validate task bodies that passed `_raw_task_problem`; errors are named `tasks[i]...`."""
    try:
        return _TASKS_ADAPTER.validate_python(tasks)
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        index, *loc = error["loc"]  # list errors start with the index of the task
        error["loc"] = tuple(loc)
        raise_error(error, ("tasks", index), tagged=True)


def validate_payload(task_type: str, payload: Any) -> Model:
    """Validate `payload` against the model of `task_type` (used by PATCH)."""
    if payload_too_large(payload):
        raise PayloadTooLarge(f"the payload is larger than {MAX_PAYLOAD_BYTES // 1024} KiB", field="payload")
    try:
        return PAYLOAD_MODELS[task_type].model_validate(payload)
    except pydantic.ValidationError as exc:
        raise_pydantic(exc, ("payload",))


def validate_patch(obj: Any) -> TaskPatch:
    """Validate a PATCH body (the payload itself is checked later against the task's type)."""
    if not isinstance(obj, dict):
        raise ValidationError("the body is a JSON object")
    try:
        return TaskPatch.model_validate(obj)
    except pydantic.ValidationError as exc:
        raise_pydantic(exc)


# pydantic-core writes the same compact JSON as the json module but for some floats (`1e-7` against
# `1e-07`); whatever else may differ, a token is at most 8 times as long in one as in the other (a
# float takes 3 to 24 characters, a character 1 to 6 bytes). So a payload below an eighth of the
# limit by pydantic-core's count is within it by either, and only larger ones are measured again.
_FAST_SIZE_SLACK = 8


def payload_too_large(payload: Any) -> bool:
    """True when `payload` as compact JSON (json module, not ASCII-escaped) is more than
    MAX_PAYLOAD_BYTES of UTF-8."""
    try:
        fast_size = len(pydantic_core.to_json(payload))
    except ValueError:  # a lone surrogate, deep nesting, not JSON: the json module decides
        fast_size = MAX_PAYLOAD_BYTES
    if fast_size * _FAST_SIZE_SLACK <= MAX_PAYLOAD_BYTES:
        return False
    return _json_size(payload) > MAX_PAYLOAD_BYTES


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def openapi_components() -> dict[str, Any]:
    """JSON Schemas (draft 2020-12, as OpenAPI 3.1 uses) of the request models."""
    _, definitions = pydantic.json_schema.models_json_schema(
        [
            (HttpTask, "validation"),
            (EmailTask, "validation"),
            (ShellTask, "validation"),
            (InternalTask, "validation"),
            (PublishTask, "validation"),
            (BatchCreate, "validation"),
            (TaskPatch, "validation"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = definitions.get("$defs", {})
    return schemas
