"""Request models of the HTTP API, validating every request and generating `/openapi.json`.

Contracts:
- A task body is discriminated by `type`: one model per task type, built from the payload models
  of `zephyr.tasktypes` (the ones the worker's executors parse with).
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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, Union, cast
from zoneinfo import available_timezones

import pydantic
import pydantic_core
from pydantic import (
    BeforeValidator,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from zephyr import tasktypes
from zephyr.errors import (
    InvalidSchedule,
    PayloadTooLarge,
    UnschedulableSchedule,
    ValidationError,
    ZephyrError,
)
from zephyr.schedule import is_valid_cron
from zephyr.tasktypes.fields import JSON_INTEGER, Model, TaskType, describe_error, field_path

MAX_NAME_CHARS = 200
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_BATCH = 1000
MAX_PRIORITY = 1_000_000
MAX_ATTEMPTS = 1000
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_DELAY_S = 10 * 365 * 24 * 3600.0
MIN_EVERY_S = 0.01
TASK_TYPES = tuple(tasktypes.TASK_TYPES)
# The pydantic error type of a well-formed instant the scheduler cannot keep (409).
OUT_OF_RANGE = "instant_out_of_range"


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
        try:
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC: a 409, not a 500
            raise PydanticCustomError(
                OUT_OF_RANGE, "the instant lies outside the years 1 to 9999 once in UTC"
            ) from None

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
        # `end_at` before `start_at` is not refused here: the schedule is well-formed but never
        # fires, a 409 like one whose `end_at` has passed (zephyr.scheduler.submit.first_run_at).
        return self


Name = Annotated[str, Field(max_length=MAX_NAME_CHARS)]
Priority = Annotated[
    int, Field(strict=True, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="higher runs first"), JSON_INTEGER
]
Attempts = Annotated[int, Field(strict=True, ge=1, le=MAX_ATTEMPTS), JSON_INTEGER]
Timeout = Annotated[float, Field(strict=True, gt=0, le=MAX_TIMEOUT_S)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]


class TaskBody(Model):
    """The fields every task has; `type` and `payload` are narrowed per task type below."""

    name: Name = ""
    schedule: Schedule | None = None
    priority: Priority = 0
    max_attempts: Attempts = 3
    timeout_s: Timeout = 300.0
    idempotency_key: IdempotencyKey | None = None
    type: str
    payload: Model


def _task_model(task_type: TaskType) -> type[TaskBody]:
    """`HttpTask` and its kind: a task whose `type` is `task_type`'s name, with its payload model."""
    name = task_type.name
    model: type[TaskBody] = pydantic.create_model(
        f"{name.capitalize()}Task",
        __base__=TaskBody,
        __doc__=f"A task of type `{name}`.",
        __module__=__name__,
        type=(cast(Any, Literal)[name], ...),
        payload=(task_type.payload, ...),
    )
    return model


TASK_MODELS: dict[str, type[TaskBody]] = {name: _task_model(t) for name, t in tasktypes.TASK_TYPES.items()}
if TYPE_CHECKING:
    TaskCreate = TaskBody
else:
    # Discriminated by `type`: pydantic picks the model by the tag, so only that one validates.
    TaskCreate = Annotated[Union[tuple(TASK_MODELS.values())], Field(discriminator="type")]  # noqa: UP007


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


_TASK_ADAPTER: TypeAdapter[TaskBody] = TypeAdapter(TaskCreate)
_TASKS_ADAPTER: TypeAdapter[list[TaskBody]] = TypeAdapter(list[TaskCreate])


# ---------------------------------------------------------------------------------------------
# Errors: pydantic's loc -> a field path, and our error classes.


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
    if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        path = field_path([*prefix, *loc, "type"])
        message = f"`type` must be one of {', '.join(TASK_TYPES)}"
    else:
        path, message = describe_error({**error, "loc": tuple(loc)}, prefix)
    if error["type"] == OUT_OF_RANGE:
        raise UnschedulableSchedule(message, field=path)
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


def validate_task(obj: Any, prefix: tuple[int | str, ...] = ()) -> TaskBody:
    """Validate one task body; raises ValidationError/InvalidSchedule/PayloadTooLarge."""
    problem = _raw_task_problem(obj, prefix)
    if problem is not None:
        raise problem
    try:
        return _TASK_ADAPTER.validate_python(obj)
    except pydantic.ValidationError as exc:
        raise_pydantic(exc, prefix, tagged=True)


def validate_batch(obj: Any) -> list[TaskBody]:
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
    if len(tasks) > MAX_BATCH:  # /openapi.json says maxItems: a bad request like any other
        raise ValidationError(f"a batch holds at most {MAX_BATCH} tasks", field="tasks")
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


def _validate_tasks(tasks: list[Any]) -> list[TaskBody]:
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
        return tasktypes.payload_model(task_type).model_validate(payload)
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
            *((model, "validation") for model in TASK_MODELS.values()),
            (BatchCreate, "validation"),
            (TaskPatch, "validation"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = definitions.get("$defs", {})
    return schemas
