"""Every validation error answers the error shape naming its field, and writes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yarl
from openapi_spec_validator import validate as validate_openapi

from tests.support.api_server import Api, running_api

URL = "http://127.0.0.1:9/"


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url, ZEPHYR_MAX_BODY_BYTES="400000") as api:
        yield api


def http(**extra: Any) -> dict[str, Any]:
    return {"type": "http", "payload": {"url": URL}, **extra}


CASES: list[tuple[Any, int, str, str | None]] = [
    # (body, status, code, field)
    ({"payload": {"url": URL}}, 400, "invalid_request", "type"),
    ({"type": "ftp", "payload": {}}, 400, "invalid_request", "type"),
    ({"type": "http"}, 400, "invalid_request", "payload"),
    (http(colour="red"), 400, "invalid_request", "colour"),
    ({"type": "http", "payload": {"url": URL, "verb": "GET"}}, 400, "invalid_request", "payload.verb"),
    ({"type": "http", "payload": {"url": "example.com"}}, 400, "invalid_request", "payload.url"),
    ({"type": "http", "payload": {"url": URL, "method": "FETCH"}}, 400, "invalid_request", "payload.method"),
    ({"type": "http", "payload": {"url": URL, "expect_status": 700}}, 400, "invalid_request", "payload.expect_status"),
    ({"type": "http", "payload": {"url": URL, "headers": {"a": 1}}}, 400, "invalid_request", "payload.headers.a"),
    ({"type": "http", "payload": {"url": {"$secret": "bad name"}}}, 400, "invalid_request", "payload.url"),
    ({"type": "http", "payload": {"url": URL, "timeout_s": -1}}, 400, "invalid_request", "payload.timeout_s"),
    ({"type": "email", "payload": {"to": [], "subject": "s", "body": "b"}}, 400, "invalid_request", "payload.to"),
    ({"type": "email", "payload": {"to": "a@b", "body": "b"}}, 400, "invalid_request", "payload.subject"),
    ({"type": "shell", "payload": {}}, 400, "invalid_request", "payload"),
    ({"type": "shell", "payload": {"command": "ls", "argv": ["ls"]}}, 400, "invalid_request", "payload"),
    ({"type": "shell", "payload": {"argv": "ls"}}, 400, "invalid_request", "payload.argv"),
    ({"type": "internal", "payload": {"function": "x", "args": {}}}, 400, "invalid_request", "payload.args"),
    ({"type": "internal", "payload": {"function": "x", "kwargs": []}}, 400, "invalid_request", "payload.kwargs"),
    ({"type": "publish", "payload": {"channel": "c", "message": "m", "backend": "kafka"}}, 400, "invalid_request",
     "payload.backend"),
    (http(schedule={"cron": "* * * *"}), 400, "invalid_schedule", "schedule.cron"),
    (http(schedule={"cron": "0 9 * * *", "timezone": "Europe/Atlantis"}), 400, "invalid_schedule",
     "schedule.timezone"),
    (http(schedule={"at": "tomorrow"}), 400, "invalid_schedule", "schedule.at"),
    (http(schedule={"delay_s": -5}), 400, "invalid_schedule", "schedule.delay_s"),
    (http(schedule={"every_s": 0}), 400, "invalid_schedule", "schedule.every_s"),
    (http(schedule={}), 400, "invalid_schedule", "schedule"),
    (http(schedule={"at": "2030-01-01T00:00:00Z", "every_s": 5}), 400, "invalid_schedule", "schedule"),
    (http(schedule={"delay_s": 5, "overlap": True}), 400, "invalid_schedule", "schedule"),
    # Well-formed (/openapi.json allows them) but never firing: 409, since a JSON Schema cannot
    # read the clock or compare two fields (schemathesis found them refused as bad requests).
    (http(schedule={"every_s": 5, "end_at": "2001-01-01T00:00:00Z"}), 409, "unschedulable", "schedule.end_at"),
    (http(schedule={"every_s": 5, "start_at": "2090-01-02T00:00:00Z", "end_at": "2090-01-01T00:00:00Z"}), 409,
     "unschedulable", "schedule.end_at"),
    (http(schedule={"cron": "0 0 30 2 *"}), 409, "unschedulable", "schedule.cron"),
    (http(schedule={"cron": "* * * * *", "start_at": "9999-12-31T23:59:59Z"}), 409, "unschedulable",
     "schedule.cron"),
    (http(schedule={"at": "0001-01-01T00:00:00+01:00"}), 409, "unschedulable", "schedule.at"),  # was a 500
    (http(schedule={"every_s": 5, "end_at": "9999-12-31T23:59:59-01:00"}), 409, "unschedulable",
     "schedule.end_at"),
    (http(schedule={"cron": "*/61 * * * *"}), 400, "invalid_schedule", "schedule.cron"),  # croniter took it
    (http(schedule={"cron": "0 */25 * * *"}), 400, "invalid_schedule", "schedule.cron"),
    (http(schedule={"cron": "0 0 * 13 *"}), 400, "invalid_schedule", "schedule.cron"),
    (http(schedule={"at": 0}), 400, "invalid_schedule", "schedule.at"),  # was read as epoch seconds
    (http(schedule={"at": "2030-01-01"}), 400, "invalid_schedule", "schedule.at"),
    (http(schedule={"at": None, "cron": None}), 400, "invalid_schedule", "schedule"),
    (http(schedule={"every_s": 5, "when": 1}), 400, "invalid_schedule", "schedule.when"),
    (http(name="x" * 201), 400, "invalid_request", "name"),
    (http(priority="high"), 400, "invalid_request", "priority"),
    (http(priority=10**12), 400, "invalid_request", "priority"),
    (http(max_attempts=0), 400, "invalid_request", "max_attempts"),
    (http(timeout_s=0), 400, "invalid_request", "timeout_s"),
    (http(idempotency_key=""), 400, "invalid_request", "idempotency_key"),
    ({"type": "internal", "payload": {"function": "f", "args": ["a\u0000b"]}}, 400, "invalid_request",
     "payload.args[0]"),
    ([http()], 400, "invalid_request", None),
    ("text", 400, "invalid_request", None),
    ({"type": "internal", "payload": {"function": "f", "args": ["x" * 270_000]}}, 413, "too_large", "payload"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "code", "field"), CASES)
async def test_bad_task_is_refused_naming_the_field(
    api: Api, body: Any, status: int, code: str, field: str | None
) -> None:
    got_status, got = await api.call("POST", "/v1/tasks", json=body)
    assert got_status == status, got
    assert got["error"]["code"] == code, got
    assert got["error"].get("field") == field, got
    assert got["error"]["message"]
    assert await api.pool.fetchval("SELECT count(*) FROM tasks") == 0


@pytest.mark.parametrize(
    "raw",
    [b"{", b"", b'{"type": "http", "payload": {"url": NaN}}', b"\xff\xfe", b'{"a": 1e999}', b"[" * 5000],
)
async def test_malformed_json_is_400(api: Api, raw: bytes) -> None:
    async with api.session.post(
        api.url("/v1/tasks"), data=raw, headers={"Content-Type": "application/json"}
    ) as r:
        body = await r.json()
    assert r.status == 400, body
    assert body["error"]["code"] in ("invalid_json", "invalid_request")


async def test_body_above_the_limit_is_413(api: Api) -> None:
    big = json.dumps(http(name="n", payload={"url": URL, "body": "x" * 500_000}))
    async with api.session.post(api.url("/v1/tasks"), data=big) as resp:
        body = await resp.json()
    assert resp.status == 413
    assert body["error"]["code"] == "too_large"


async def test_body_limit_without_content_length_is_413(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 10_000

    async with api.session.post(api.url("/v1/tasks"), data=chunks()) as resp:
        body = await resp.json()
    assert resp.status == 413, body


async def test_secrets_are_accepted_where_strings_are_and_stored_as_given(api: Api) -> None:
    payload = {
        "method": "POST",
        "url": {"$secret": "HOOK_URL"},
        "headers": {"Authorization": {"$secret": "HOOK_TOKEN"}},
        "body": {"text": "hi"},
        "expect_status": [200, 204],
        "timeout_s": 5,
        "follow_redirects": False,
    }
    status, task = await api.call("POST", "/v1/tasks", json={"type": "http", "payload": payload})
    assert status == 201, task
    assert task["payload"] == payload


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "email", "payload": {"to": ["a@x", {"$secret": "BOSS"}], "subject": "s", "body": "b",
                                      "html": "<b>b</b>", "from": "me@x", "cc": "c@x", "bcc": ["d@x"]}},
        {"type": "shell", "payload": {"command": "echo hi", "env": {"A": "1"}, "cwd": "/tmp"}},
        {"type": "shell", "payload": {"argv": ["echo", "hi"]}},
        {"type": "internal", "payload": {"function": "reports.build", "args": [1, "x"], "kwargs": {"k": [1]}}},
        {"type": "publish", "payload": {"channel": "news", "message": {"any": "json"}, "backend": "postgres"}},
        {"type": "http", "payload": {"url": URL, "body": "plain text", "expect_status": 404}},
    ],
)  # fmt: skip
async def test_every_type_is_accepted(api: Api, payload: dict[str, Any]) -> None:
    status, task = await api.call("POST", "/v1/tasks", json=payload)
    assert status == 201, task
    assert task["payload"] == payload["payload"]


async def test_unknown_route_and_method_use_the_error_shape(api: Api) -> None:
    status, body = await api.call("GET", "/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"
    async with api.session.delete(api.url("/v1/tasks")) as resp:
        body = await resp.json()
    assert resp.status == 405 and body["error"]["code"] == "method_not_allowed"
    # RFC 9110: a 405 names the methods the resource takes (schemathesis found it missing).
    assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}


async def test_a_payload_of_another_type_conflicts_with_the_task(api: Api) -> None:
    status, task = await api.call("POST", "/v1/tasks", json=http())
    assert status == 201
    shell = {"command": "true"}
    status, body = await api.call("PATCH", f"/v1/tasks/{task['id']}", json={"payload": shell})
    assert status == 409, body
    assert "`shell` task; this task is `http`" in body["error"]["message"]
    status, body = await api.call("PATCH", f"/v1/tasks/{task['id']}", json={"payload": {"nope": 1}})
    assert status == 400, body
    assert body["error"]["field"] == "payload.url"


async def test_good_cron_expressions_stay_accepted(api: Api) -> None:
    for cron in ("*/5 * * * *", "0 9 * * MON-FRI", "0,30 9-17/2 1 jan,Feb *", "0 0 * * 7", "*/60 * * * *"):
        status, body = await api.call("POST", "/v1/tasks", json=http(schedule={"cron": cron}))
        assert status == 201, (cron, body)


async def test_openapi_document_is_3_1_and_covers_the_api(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/tasks", "/v1/tasks/batch", "/v1/tasks/{id}", "/v1/runs/{run_id}/logs", "/v1/stats"} <= set(
        doc["paths"]
    )
    schemas = doc["components"]["schemas"]
    assert {"HttpTask", "EmailTask", "ShellTask", "InternalTask", "PublishTask", "Schedule", "Error"} <= set(
        schemas
    )
    assert schemas["HttpTask"]["additionalProperties"] is False
    validate_openapi(doc)  # the OpenAPI 3.1 meta-schema, and every $ref resolves
    # every $ref resolves
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in schemas, ref


@pytest.mark.parametrize("query", ["name=%00", "name=a%00b&status=dead", "cursor=%00"])
async def test_unstorable_query_text_is_400(api: Api, query: str) -> None:
    async with api.session.get(yarl.URL(api.url(f"/v1/tasks?{query}"), encoded=True)) as resp:
        body = await resp.json()
    assert resp.status == 400, body
    assert body["error"]["field"] in ("name", "cursor")


async def test_idempotency_key_header_that_is_not_utf8_is_400(api: Api) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", yarl.URL(api.base).port)
    body = json.dumps(http()).encode()
    writer.write(
        b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \xff\xfe\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b'"field":"Idempotency-Key"' in answer


@pytest.mark.parametrize("channel", ["zephyr_drain", "zephyr_cancel", "zephyr_tasks", "Zephyr_anything"])
async def test_publish_to_the_cluster_channels_is_refused(api: Api, channel: str) -> None:
    body = {"type": "publish", "payload": {"channel": channel, "message": "worker-1"}}
    status, answer = await api.call("POST", "/v1/tasks", json=body)
    assert status == 400, answer
    assert answer["error"]["field"] == "payload.channel"
    assert "cluster's own" in answer["error"]["message"]
    assert await api.pool.fetchval("SELECT count(*) FROM tasks") == 0


async def test_the_batch_path_is_not_a_task(api: Api) -> None:
    # aiohttp matched /v1/tasks/batch as a task id too: its 405 offered GET and PATCH (schemathesis).
    for method in ("GET", "PATCH", "OPTIONS", "DELETE"):
        async with api.session.request(method, api.url("/v1/tasks/batch")) as resp:
            body = await resp.json()
        assert resp.status == 405 and body["error"]["code"] == "method_not_allowed", method
        assert resp.headers["Allow"] == "POST", method
    status, body = await api.call("POST", "/v1/tasks/batch", json={"tasks": [http()]})
    assert status == 201, body
    status, body = await api.call("GET", f"/v1/tasks/{body['ids'][0]}")
    assert status == 200, body
    status, body = await api.call("GET", "/v1/tasks/batchx")
    assert status == 404, body


async def test_whole_floats_are_integers(api: Api) -> None:
    # JSON Schema's `integer` counts 515.0 as one; the API refused it (schemathesis).
    payload = {"url": URL, "expect_status": 200.0}
    status, task = await api.call(
        "POST", "/v1/tasks", json=http(payload=payload, max_attempts=515.0, priority=-3.0)
    )
    assert status == 201, task
    assert (task["max_attempts"], task["priority"], task["payload"]["expect_status"]) == (515, -3, 200)
    payload = {"url": URL, "expect_status": [201.0, 204]}
    status, task = await api.call(
        "PATCH", f"/v1/tasks/{task['id']}", json={"payload": payload, "max_attempts": 4.0}
    )
    assert status == 200, task
    assert (task["max_attempts"], task["payload"]["expect_status"]) == (4, [201, 204])
    for field, value in (
        ("max_attempts", 2.5),
        ("max_attempts", True),
        ("priority", "1"),
        ("priority", 1e300),
    ):
        status, body = await api.call("POST", "/v1/tasks", json=http(**{field: value}))
        assert (status, body["error"]["field"]) == (400, field), (field, value)
    status, body = await api.call(
        "POST", "/v1/tasks", json=http(payload={"url": URL, "expect_status": 200.5})
    )
    assert (status, body["error"]["field"]) == (400, "payload.expect_status")


async def test_any_traceparent_the_document_allows_is_taken(api: Api) -> None:
    # The header's schema had maxLength 512 while any value is taken (ignored with a warning).
    status, doc = await api.call("GET", "/openapi.json")
    header = next(p for p in doc["paths"]["/v1/tasks"]["post"]["parameters"] if p["name"] == "traceparent")
    assert header["schema"] == {"type": "string"}
    status, task = await api.call("POST", "/v1/tasks", json=http(), headers={"traceparent": "0" * 600})
    assert status == 201, task
    assert [w["code"] for w in task["warnings"]] == ["invalid_traceparent", "no_worker_for_type"]
