"""The http executor against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.worker import make_context
from zephyr.errors import TaskFailed
from zephyr.worker.executors.base import RunFailure
from zephyr.worker.executors.http import BODY_CAP_BYTES, MAX_REDIRECTS, HttpExecutor

SEEN = web.AppKey("seen", list)


@pytest.fixture
async def target() -> AsyncIterator[TestServer]:
    seen: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"method": request.method, "headers": dict(request.headers), "body": body})
        return web.json_response(
            {
                "method": request.method,
                "ct": request.headers.get("Content-Type"),
                "body": body.decode(),
                "auth": request.headers.get("Authorization"),
            },
            headers={"X-Reply": "yes"},
        )

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status body")

    async def big(_request: web.Request) -> web.Response:
        return web.Response(text="a" * (BODY_CAP_BYTES * 2))

    async def loop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/loop/{n + 1}")

    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/echo")

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="late")

    app = web.Application()
    app[SEEN] = seen
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app.router.add_get("/loop/{n}", loop)
    app.router.add_get("/redirect", redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def executor() -> AsyncIterator[HttpExecutor]:
    ex = HttpExecutor()
    yield ex
    await ex.close()


async def test_post_json_body_keeps_status_headers_and_body(
    target: TestServer, executor: HttpExecutor
) -> None:
    url = str(target.make_url("/echo"))
    result = await executor.execute(
        make_context(),
        {"method": "POST", "url": url, "headers": {"Authorization": "Bearer t"}, "body": {"a": 1}},
    )
    assert result["status"] == 200
    assert result["headers"]["X-Reply"] == "yes"
    assert '"ct": "application/json"' in result["body"]
    assert '"body": "{\\"a\\":1}"' in result["body"]
    assert '"auth": "Bearer t"' in result["body"]
    assert result["truncated"] is False


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def sent_traceparents(target: TestServer) -> list[str]:
    """The traceparent headers of the last request the target got."""
    headers: dict[str, str] = target.app[SEEN][-1]["headers"]
    return [value for key, value in headers.items() if key.lower() == "traceparent"]


async def test_the_run_traceparent_is_sent_unless_the_payload_sets_one(
    target: TestServer, executor: HttpExecutor
) -> None:
    url = str(target.make_url("/echo"))
    await executor.execute(make_context()._replace(traceparent=TRACEPARENT), {"url": url})
    assert sent_traceparents(target) == [TRACEPARENT]
    own = "00-11111111111111111111111111111111-2222222222222222-00"
    payload = {"url": url, "headers": {"TraceParent": own}}
    await executor.execute(make_context()._replace(traceparent=TRACEPARENT), payload)
    assert sent_traceparents(target) == [own]
    await executor.execute(make_context(), {"url": url})
    assert sent_traceparents(target) == []


async def test_text_body_is_sent_as_is(target: TestServer, executor: HttpExecutor) -> None:
    result = await executor.execute(
        make_context(), {"method": "PUT", "url": str(target.make_url("/echo")), "body": "plain"}
    )
    assert '"body": "plain"' in result["body"]
    assert target.app[SEEN][-1]["body"] == b"plain"


async def test_unexpected_status_fails_with_the_status_in_the_result(
    target: TestServer, executor: HttpExecutor
) -> None:
    with pytest.raises(RunFailure) as info:
        await executor.execute(make_context(), {"url": str(target.make_url("/status/503"))})
    assert info.value.code == "http_status"
    assert info.value.result["status"] == 503
    assert info.value.result["body"] == "status body"
    assert info.value.retryable


async def test_expect_status_accepts_listed_codes(target: TestServer, executor: HttpExecutor) -> None:
    result = await executor.execute(
        make_context(), {"url": str(target.make_url("/status/404")), "expect_status": [404, 410]}
    )
    assert result["status"] == 404
    with pytest.raises(RunFailure):
        await executor.execute(make_context(), {"url": str(target.make_url("/echo")), "expect_status": 201})


async def test_body_is_capped_at_64_kib(target: TestServer, executor: HttpExecutor) -> None:
    result = await executor.execute(make_context(), {"url": str(target.make_url("/big"))})
    assert len(result["body"]) == BODY_CAP_BYTES
    assert result["truncated"] is True


async def test_redirects_are_followed_but_bounded(target: TestServer, executor: HttpExecutor) -> None:
    result = await executor.execute(make_context(), {"url": str(target.make_url("/redirect"))})
    assert result["status"] == 200 and '"method": "GET"' in result["body"]
    with pytest.raises(RunFailure) as info:
        await executor.execute(make_context(), {"url": str(target.make_url("/loop/0"))})
    assert info.value.code == "too_many_redirects"
    assert str(MAX_REDIRECTS) in str(info.value)


async def test_connection_refused_is_a_retryable_http_error(executor: HttpExecutor) -> None:
    from tests.support.cluster import free_port

    with pytest.raises(RunFailure) as info:
        await executor.execute(make_context(), {"url": f"http://127.0.0.1:{free_port()}/"})
    assert info.value.code == "http_error" and info.value.retryable


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "payload.url"),
        ({"url": "ftp://x/"}, "payload.url"),
        ({"url": "http://x/", "method": "BREW"}, "payload.method"),
        ({"url": "http://x/", "headers": {"a": 1}}, "payload.headers"),
        ({"url": "http://x/", "expect_status": "200"}, "payload.expect_status"),
        ({"url": "http://x/", "bogus": 1}, "payload.bogus"),
    ],
)
async def test_bad_payloads_name_the_field_and_are_not_retried(
    executor: HttpExecutor, payload: dict[str, Any], field: str
) -> None:
    with pytest.raises(TaskFailed) as info:
        await executor.execute(make_context(), payload)
    assert str(info.value).startswith(field)
    assert info.value.code == "invalid_payload" and info.value.retryable is False


async def test_follow_redirects_false_and_request_timeout(target: TestServer, executor: HttpExecutor) -> None:
    with pytest.raises(RunFailure) as info:
        await executor.execute(
            make_context(), {"url": str(target.make_url("/redirect")), "follow_redirects": False}
        )
    assert info.value.result["status"] == 302
    result = await executor.execute(
        make_context(),
        {"url": str(target.make_url("/redirect")), "follow_redirects": False, "expect_status": 302},
    )
    assert result["status"] == 302
    with pytest.raises(RunFailure) as info:
        await executor.execute(make_context(), {"url": str(target.make_url("/slow")), "timeout_s": 0.2})
    assert info.value.code == "http_timeout" and info.value.retryable
