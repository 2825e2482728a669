"""/openapi.json states the payload rules the models apply: a payload its JSON Schema allows is one
the API accepts, and one it forbids is refused (schemathesis checks this against the live API;
these are the cases it found, checked without a server)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.unit.test_tasktypes import BAD, GOOD, api_error
from zephyr.errors import ZephyrError
from zephyr.scheduler.openapi import openapi_document
from zephyr.scheduler.schemas import parse_json, validate_task
from zephyr.tasktypes.urls import URL_PATTERN, url_problem

FORMATS = FormatChecker()


def schema_allows(component: str, value: Any) -> bool:
    """Whether /openapi.json's schema `component` allows `value`."""
    document = Resource.from_contents(openapi_document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:zephyr:openapi", document)
    schema = {"$ref": f"urn:zephyr:openapi#/components/schemas/{component}"}
    validator = Draft202012Validator(schema, registry=registry, format_checker=FORMATS)
    return validator.is_valid(value)


@pytest.mark.parametrize(("task_type", "payload"), BAD + GOOD)
def test_the_published_payload_schemas_and_the_api_agree(task_type: str, payload: Any) -> None:
    assert schema_allows(f"{task_type.capitalize()}Payload", payload) == (
        api_error(task_type, payload) is None
    )


TASKS = [
    {"priority": 10**6, "max_attempts": 1000},
    {"priority": 10**6 + 1},
    {"priority": -(10**6) - 1},
    {"max_attempts": 0},
    {"max_attempts": 515.0, "priority": -3.0},  # JSON Schema's integers include 515.0
    {"max_attempts": 2.5},
    {"max_attempts": True},
    {"priority": "1"},
]


@pytest.mark.parametrize("fields", TASKS)
def test_the_published_task_schema_and_the_api_agree(fields: dict[str, Any]) -> None:
    task = {"type": "internal", "payload": {"function": "f"}, **fields}
    try:
        validate_task(task)
    except ZephyrError:
        accepted = False
    else:
        accepted = True
    assert schema_allows("InternalTask", task) == accepted


NUL_TASKS = [
    {"type": "email", "payload": {"to": "a@b.c", "subject": "s\u0000", "body": "b"}},
    {"type": "email", "payload": {"to": "a\u0000@b.c", "subject": "s", "body": "b"}},
    {"type": "internal", "payload": {"function": "f", "args": [{"k\u0000": 1}]}},
    {"type": "internal", "payload": {"function": "f", "kwargs": {"k": [[{"deep": "\u0000"}]]}}},
    {"type": "http", "payload": {"url": "http://h/", "headers": {"a\u0000": "b"}}},
    {"type": "http", "payload": {"url": "http://h/", "body": "\u0000"}},
    {"type": "publish", "payload": {"channel": "c", "message": {"a": ["\u0000"]}}},
    {"type": "shell", "payload": {"command": "true\u0000"}},
    {"type": "shell", "payload": {"argv": ["true"], "env": {"A": "\u0000"}}},
    {"type": "internal", "payload": {"function": "f"}, "name": "\u0000"},
    {"type": "internal", "payload": {"function": "f", "args": [{"k": "text", "n": [1.5, True, None]}]}},
]


@pytest.mark.parametrize("task", NUL_TASKS)
def test_the_published_schemas_refuse_nul_as_the_api_does(task: dict[str, Any]) -> None:
    # PostgreSQL stores no NUL; the API refused it at any depth while the schemas allowed it.
    try:
        validate_task(parse_json(json.dumps(task).encode()))
    except ZephyrError:
        accepted = False
    else:
        accepted = True
    assert schema_allows(f"{task['type'].capitalize()}Task", task) == accepted


@pytest.mark.parametrize(
    "url",
    [
        "http://[",
        "http://h:/",
        "http://[::1]:99999",
        "http://[1:2:3:4:5:6:7:8:9]/",
        "http://a..b/",
        "http://h/é",
    ],
)
def test_urls_that_do_not_parse_are_refused_naming_the_field(url: str) -> None:
    assert api_error("http", {"url": url}) == f"payload.url: {url_problem(url)}"
    assert not schema_allows("HttpPayload", {"url": url})


@settings(max_examples=300, deadline=None)
@given(st.from_regex(URL_PATTERN, fullmatch=True))
def test_every_url_the_pattern_allows_parses(url: str) -> None:
    assert url_problem(url) is None
    parsed = yarl.URL(url)  # what the worker's HTTP client parses it with
    assert parsed.scheme in ("http", "https") and parsed.host


def test_free_form_fields_keep_their_description_beside_the_json_value_rule() -> None:
    # The dashboard's form follows a top-level $ref and shows the target's description instead.
    body = openapi_document()["components"]["schemas"]["HttpPayload"]["properties"]["body"]
    assert "$ref" not in body and body["anyOf"] == [{"$ref": "#/components/schemas/JsonValue"}]
    assert body["description"] == "a string is sent as is, anything else as JSON"
