"""Request models: field paths of errors, limits, the OpenAPI components."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zephyr.errors import InvalidSchedule, PayloadTooLarge, ValidationError
from zephyr.scheduler import schemas
from zephyr.scheduler.cursors import decode_int, decode_uuid, encode
from zephyr.tasktypes.fields import field_path
from zephyr.tasktypes.urls import MAX_URL_CHARS, URL_PATTERN


def error_of(body: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        schemas.validate_task(body)
    return caught.value


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("tasks", 17, "schedule", "cron"), "tasks[17].schedule.cron"),
        (("payload", "args", 0), "payload.args[0]"),
        (("payload", "headers", "X-\ud800"), "payload.headers.X-?"),
        ((), ""),
    ],
)
def test_field_path(loc: tuple[int | str, ...], path: str) -> None:
    assert field_path(loc) == path


def test_schedule_errors_are_invalid_schedule_and_others_invalid_request() -> None:
    error = error_of({"type": "internal", "payload": {"function": "f"}, "schedule": {"cron": "nope"}})
    assert isinstance(error, InvalidSchedule) and error.field == "schedule.cron"
    error = error_of(
        {"type": "internal", "payload": {"function": "f", "kwargs": {"schedule": 1}}, "priority": "x"}
    )
    assert not isinstance(error, InvalidSchedule) and error.field == "priority"


def test_a_payload_key_named_like_a_type_keeps_its_path() -> None:
    error = error_of({"type": "http", "payload": {"url": "http://x", "headers": {"http": 5}}})
    assert error.field == "payload.headers.http"


@pytest.mark.parametrize("name", ["1abc", "a..b", "a.", "a-b", "a" * 201, "a." * 100 + "b"])
def test_bad_function_names_are_refused_every_time(name: str) -> None:
    for _ in range(2):  # the check is cached: a repeat is refused too
        assert error_of({"type": "internal", "payload": {"function": name}}).field == "payload.function"


def test_payload_limit_counts_utf8_bytes() -> None:
    text = "é" * (schemas.MAX_PAYLOAD_BYTES // 2)  # 2 bytes each: just over the limit with the JSON around it
    with pytest.raises(PayloadTooLarge) as caught:
        schemas.validate_task({"type": "internal", "payload": {"function": "f", "args": [text]}})
    assert caught.value.field == "payload"
    schemas.validate_task({"type": "internal", "payload": {"function": "f", "args": [text[:1000]]}})


@pytest.mark.parametrize("number", [1e-07, 2.5e-05, 1e16, 0.1])
def test_payload_limit_is_exact_whatever_the_floats(number: float) -> None:
    # pydantic-core, which measures small payloads, writes some floats otherwise (`1e-7`)
    def payload(pad: int) -> dict[str, Any]:
        return {"function": "f", "args": [number] * 20_000, "kwargs": {"p": "x" * pad}}

    pad = schemas.MAX_PAYLOAD_BYTES - len(json.dumps(payload(0), separators=(",", ":")))
    schemas.validate_task({"type": "internal", "payload": payload(pad)})
    with pytest.raises(PayloadTooLarge):
        schemas.validate_task({"type": "internal", "payload": payload(pad + 1)})


@pytest.mark.parametrize(
    "raw", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e999}', b'{"a": "\\u0000"}', b'{"\\ud800": 1}', b"{"]
)
def test_parse_json_refuses_what_postgres_cannot_store(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        schemas.parse_json(raw)


def test_parse_json_refuses_deep_nesting() -> None:
    with pytest.raises(ValidationError) as caught:
        schemas.parse_json(b"[" * 100_000 + b"]" * 100_000)
    assert "nested" in caught.value.message


def test_parse_json_names_the_field_of_unstorable_text() -> None:
    with pytest.raises(ValidationError) as caught:
        schemas.parse_json(b'{"payload": {"args": ["ok", "a\\u0000b"]}}')
    assert caught.value.field == "payload.args[1]"
    # a surrogate pair is a valid character; a literal backslash-u text is just text
    assert schemas.parse_json(b'{"a": "\\ud83d\\ude00", "b": "\\\\u0000"}')["a"] == "\U0001f600"


def test_batch_limits() -> None:
    one = {"type": "internal", "payload": {"function": "f"}}
    assert len(schemas.validate_batch({"tasks": [one] * schemas.MAX_BATCH})) == schemas.MAX_BATCH
    with pytest.raises(ValidationError) as refused:  # maxItems in /openapi.json: 400, not 413
        schemas.validate_batch({"tasks": [one] * (schemas.MAX_BATCH + 1)})
    assert refused.value.field == "tasks"


@pytest.mark.parametrize(
    ("bad", "error", "field"),
    [
        ({3: {"priority": "x"}, 5: {"payload": {"function": "f", "args": ["x" * 300_000]}}}, ValidationError,
         "tasks[3].priority"),
        ({1: {"payload": {"function": "f", "args": ["x" * 300_000]}}, 3: {"bogus": 1}}, PayloadTooLarge,
         "tasks[1].payload"),
        ({2: "x", 4: {"type": "ftp"}}, ValidationError, "tasks[2]"),
        ({4: "x", 2: {"type": "ftp"}}, ValidationError, "tasks[2].type"),
        ({6: {"schedule": {"cron": "61 * * * *"}}, 7: "x"}, InvalidSchedule, "tasks[6].schedule.cron"),
        ({0: {"type": "http", "payload": {"url": "http://x", "headers": {"http": 5}}}}, ValidationError,
         "tasks[0].payload.headers.http"),
    ],
)  # fmt: skip
def test_batch_error_is_that_of_the_first_failing_task(
    bad: dict[int, Any], error: type[Exception], field: str
) -> None:
    tasks: list[Any] = [{"type": "internal", "payload": {"function": "f"}} for _ in range(10)]
    for index, change in bad.items():
        tasks[index] = change if isinstance(change, str) else {**tasks[index], **change}
    with pytest.raises(error) as caught:
        schemas.validate_batch({"tasks": tasks})
    assert type(caught.value) is error and caught.value.field == field  # type: ignore[attr-defined]


def test_patch_accepts_partial_and_null_schedule() -> None:
    patch = schemas.validate_patch({"schedule": None})
    assert "schedule" in patch.model_fields_set and patch.schedule is None
    assert schemas.validate_patch({"priority": 2}).model_fields_set == {"priority"}


def test_openapi_components_have_every_type_and_forbid_extras() -> None:
    components = schemas.openapi_components()
    for name in (
        "HttpTask",
        "EmailTask",
        "ShellTask",
        "InternalTask",
        "PublishTask",
        "BatchCreate",
        "TaskPatch",
    ):
        assert components[name]["additionalProperties"] is False, name
    url = components["HttpPayload"]["properties"]["url"]
    assert {"type": "string", "pattern": URL_PATTERN, "maxLength": MAX_URL_CHARS} in url["anyOf"]


def test_cursors_round_trip_and_refuse_other_kinds() -> None:
    import uuid

    value = uuid.uuid4()
    assert decode_uuid("t", encode("t", value)) == value
    assert decode_int("l", encode("l", 42)) == 42
    with pytest.raises(ValidationError):
        decode_uuid("t", encode("r", value))
    with pytest.raises(ValidationError):
        decode_int("l", "%%%")
