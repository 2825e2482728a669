"""Bearer tokens: required everywhere but /healthz and /readyz; refusal to listen openly."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator

import pytest

from tests.support.api_server import Api, running_api
from tests.support.cluster import free_port
from zephyr.client import ApiError, AsyncClient
from zephyr.scheduler.middleware import token_ok


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url, ZEPHYR_API_TOKENS="alpha-token,beta-token") as api:
        yield api


TASK = {"type": "internal", "payload": {"function": "zephyr.noop"}}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer wrong",
        "bearer alpha-token",
        "alpha-token",
        "Basic YWxwaGE6",
        "Bearer alpha-token2",
    ],
)
async def test_missing_or_wrong_token_is_401(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (
        ("POST", "/v1/tasks"),
        ("GET", "/v1/tasks"),
        ("GET", "/v1/stats"),
        ("GET", "/metrics"),
    ):
        async with api.session.request(method, api.url(path), json=TASK, headers=headers) as resp:
            body = await resp.json(content_type=None)
        assert resp.status == 401, (method, path)
        assert body["error"]["code"] == "unauthenticated"
    assert await api.pool.fetchval("SELECT count(*) FROM tasks") == 0


async def test_each_token_works_and_probes_stay_open(api: Api) -> None:
    for token in ("alpha-token", "beta-token"):
        async with AsyncClient(api.base, token) as client:
            task = await client.submit(TASK)
            assert (await client.get_task(task["id"]))["id"] == task["id"]
    async with AsyncClient(api.base, "") as anonymous:
        with pytest.raises(ApiError) as caught:
            await anonymous.stats()
        assert caught.value.status == 401
    assert (await api.call("GET", "/healthz"))[0] == 200
    assert (await api.call("GET", "/readyz"))[0] == 200


def test_token_comparison() -> None:
    assert token_ok("Bearer a", ("b", "a"))
    assert not token_ok("Bearer ", ("a",))
    assert not token_ok(None, ("a",))
    assert not token_ok("Bearer a", ())


async def test_non_loopback_without_tokens_refuses_to_start(database_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zephyr.cli.main", "scheduler",
        env={"ZEPHYR_DATABASE_URL": database_url, "ZEPHYR_HTTP_ADDR": f"0.0.0.0:{free_port()}", "PATH": "/usr/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert b"ZEPHYR_API_TOKENS" in err and b"ZEPHYR_HTTP_ADDR" in err


async def test_address_in_use_refuses_to_start_naming_the_variable(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "zephyr.cli.main", "scheduler",
            env={"ZEPHYR_DATABASE_URL": database_url, "ZEPHYR_HTTP_ADDR": f"127.0.0.1:{port}", "PATH": "/usr/bin"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err
    assert err.decode().startswith("zephyr scheduler: ZEPHYR_HTTP_ADDR: cannot listen")
