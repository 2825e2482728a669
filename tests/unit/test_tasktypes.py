"""One definition per task type: the API and the worker's executors judge a payload by the same
model, so they accept the same payloads and name the same field with the same message."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import zephyr
from zephyr import tasktypes
from zephyr.errors import TaskFailed, ZephyrError
from zephyr.functions import is_function_name
from zephyr.scheduler import schemas
from zephyr.taskstore import stored_payload
from zephyr.tasktypes.publish import PublishPayload
from zephyr.worker.executors.base import parse_resolved
from zephyr.worker.secrets import resolve

URL = "https://x.example/hook"

# (type, payload): each bad in one field, secrets written in clear (as the worker sees them).
BAD: list[tuple[str, Any]] = [
    ("http", {}),
    ("http", {"url": "ftp://x/"}),
    ("http", {"url": "http://["}),  # aiohttp cannot parse it (schemathesis)
    ("http", {"url": "http://[:::]/"}),
    ("http", {"url": "http://x.example:65536/"}),
    ("http", {"url": "http://x.example/a b"}),
    ("http", {"url": URL, "method": "BREW"}),
    ("http", {"url": URL, "headers": {"a": 1}}),
    ("http", {"url": URL, "expect_status": "200"}),
    ("http", {"url": URL, "timeout_s": 0}),
    ("http", {"url": URL, "follow_redirects": "yes"}),
    ("http", {"url": URL, "bogus": 1}),
    ("email", {"subject": "s", "body": "b"}),
    ("email", {"to": [], "subject": "s", "body": "b"}),
    ("email", {"to": "not-an-address", "subject": "s", "body": "b"}),
    ("email", {"to": ["a@b.c", "x\r\n@y"], "subject": "s", "body": "b"}),
    ("email", {"to": "a@b.c", "subject": "s"}),
    ("email", {"to": "a@b.c", "subject": "s", "body": "b", "from": "nobody"}),
    ("email", {"to": "a@b.c", "subject": "s", "body": "b", "bcc": [1]}),
    ("shell", {}),
    ("shell", {"command": "true", "argv": ["true"]}),
    ("shell", {"command": None, "argv": None, "cwd": "/tmp"}),
    ("shell", {"command": " "}),
    ("shell", {"command": "\t\r\n\v\f"}),
    ("shell", {"argv": []}),
    ("shell", {"command": "true", "env": {"A": 1}}),
    ("internal", {"args": []}),
    ("internal", {"function": "has-hyphen"}),
    ("internal", {"function": "a." * 100 + "b"}),
    ("internal", {"function": "f", "args": {}}),
    ("internal", {"function": "f", "kwargs": []}),
    ("publish", {"message": "m"}),
    ("publish", {"channel": "c"}),
    ("publish", {"channel": "", "message": "m"}),
    ("publish", {"channel": "c" * 64, "message": "m"}),
    ("publish", {"channel": "é" * 32, "message": "m"}),  # 32 characters, 64 bytes
    ("publish", {"channel": "é", "message": "m"}),  # ASCII only: /openapi.json cannot count bytes
    ("publish", {"channel": "tab\there", "message": "m"}),
    ("publish", {"channel": "c", "message": "m", "backend": "kafka"}),
    ("publish", {"channel": "c", "message": "m", "backend": None}),
]

GOOD: list[tuple[str, Any]] = [
    (
        "http",
        {"url": URL, "method": "post", "headers": {"A": "b"}, "body": {"k": 1}, "expect_status": [200, 204]},
    ),
    ("email", {"to": ["a@b.c"], "subject": "s", "body": "b", "from": "me@b.c", "cc": "c@b.c"}),
    ("shell", {"argv": ["echo", "hi"], "env": {"A": "1"}, "cwd": "/tmp"}),
    ("shell", {"command": "\x1c", "argv": None}),  # not blank for JSON Schema's `\S`
    ("internal", {"function": "reports.build", "args": [1], "kwargs": {"k": "v"}}),
    ("publish", {"channel": "orders created:eu-1", "message": {"any": "json"}}),
    ("publish", {"channel": "c" * 63, "message": "m", "backend": "postgres"}),
]


def api_error(task_type: str, payload: Any) -> str | None:
    """`field: message` of the API's answer to a task with this payload, None when accepted."""
    try:
        schemas.validate_task({"type": task_type, "payload": payload})
    except ZephyrError as exc:
        return f"{exc.field}: {exc.message}"
    return None


def worker_error(task_type: str, payload: Any) -> str | None:
    """The message of the executors' parse of this (resolved) payload, None when accepted."""
    try:
        parse_resolved(tasktypes.payload_model(task_type), payload)
    except TaskFailed as exc:
        assert (exc.code, exc.retryable) == ("invalid_payload", False)
        return str(exc)
    return None


@pytest.mark.parametrize(("task_type", "payload"), BAD)
def test_api_and_worker_refuse_a_bad_payload_alike(task_type: str, payload: Any) -> None:
    refused = api_error(task_type, payload)
    assert refused is not None and refused.startswith("payload")
    assert worker_error(task_type, payload) == refused


@pytest.mark.parametrize(("task_type", "payload"), GOOD)
def test_api_and_worker_accept_a_good_payload_alike(task_type: str, payload: Any) -> None:
    assert api_error(task_type, payload) is None
    assert worker_error(task_type, payload) is None


def test_the_registry_is_what_the_api_offers() -> None:
    assert list(tasktypes.TASK_TYPES) == ["http", "email", "shell", "internal", "publish"]
    assert tuple(tasktypes.TASK_TYPES) == schemas.TASK_TYPES
    components = schemas.openapi_components()
    for name, task_type in tasktypes.TASK_TYPES.items():
        task = components[f"{name.capitalize()}Task"]
        assert task["properties"]["type"]["const"] == name
        assert task["properties"]["payload"]["$ref"].endswith(task_type.payload.__name__)


def test_publish_without_backend_stores_none_and_leaves_the_choice_to_the_worker() -> None:
    task = schemas.validate_task({"type": "publish", "payload": {"channel": "c", "message": 1}})
    assert stored_payload(task.payload) == {"channel": "c", "message": 1}
    assert parse_resolved(PublishPayload, {"channel": "c", "message": 1}).backend is None
    backend = schemas.openapi_components()["PublishPayload"]["properties"]["backend"]
    assert backend["enum"] == ["redis", "postgres"] and "default" not in backend


def test_function_names_follow_one_rule_for_registry_and_api() -> None:
    for name in ("reports.build", "a", "_x.y_2"):
        assert is_function_name(name) and api_error("internal", {"function": name}) is None
        zephyr.task(name)
    for name in ("has-hyphen", "é", "a..b", "x" * 201, "a.b\n"):
        assert not is_function_name(name) and api_error("internal", {"function": name}) is not None
        with pytest.raises(ValueError, match="dotted identifier"):
            zephyr.task(name)


def test_a_secret_name_the_api_accepts_the_worker_resolves() -> None:
    payload = {"url": {"$secret": "1_HOOK"}}
    assert api_error("http", payload) is None
    resolved, values = resolve(payload, {"ZEPHYR_SECRET_1_HOOK": URL})
    assert resolved == {"url": URL} and values == [URL]
    assert api_error("http", {"url": {"$secret": "X" * 129}}) is not None


def test_task_type_modules_load_no_service_or_network_code() -> None:
    code = "import json, sys, zephyr.tasktypes; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    loaded = json.loads(out.stdout)
    forbidden = (
        "aiohttp",
        "grpc",
        "asyncpg",
        "zephyr.scheduler",
        "zephyr.worker",
        "zephyr.coordinator",
        "zephyr.db",
    )
    assert [m for m in loaded if m.split(".")[0] in forbidden or m.startswith(forbidden)] == []
