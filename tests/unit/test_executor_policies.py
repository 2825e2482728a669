"""The worker's payload policies through the real executors: a real bash, real HTTP servers on
loopback addresses (127.0.0.1 and 127.0.0.2 stand for "allowed" and "refused" hosts where a test
exempts one of them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.worker import make_context
from zephyr.errors import TaskFailed
from zephyr.worker.destinations import DestinationPolicy, networks
from zephyr.worker.executors.base import RunFailure
from zephyr.worker.executors.http import MAX_REDIRECTS, HttpExecutor
from zephyr.worker.executors.shell import ShellExecutor


async def test_bash_env_runs_code_around_an_allowed_command_unless_allowed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"touch {marker}\n")
    payload = {"argv": ["bash", "-c", "true"], "env": {"BASH_ENV": str(script)}}
    with pytest.raises(TaskFailed) as info:
        await ShellExecutor(r"bash -c true").execute(make_context(), payload)
    assert info.value.code == "not_allowed" and "payload.env.BASH_ENV" in str(info.value)
    assert not marker.exists()
    # What the refusal prevents: with the name allowed, bash runs the file before the command.
    await ShellExecutor(r"bash -c true", env_allow="BASH_ENV").execute(make_context(), payload)
    assert marker.exists()


async def test_cwd_is_part_of_what_the_allow_pattern_allows(tmp_path: Path) -> None:
    for directory, text in (("good", "echo good"), ("evil", "echo evil")):
        (tmp_path / directory).mkdir()
        (tmp_path / directory / "run.sh").write_text(f"#!/bin/sh\n{text}\n")
        (tmp_path / directory / "run.sh").chmod(0o755)
    good = str(tmp_path / "good")
    executor = ShellExecutor(rf"cd {good} && \./run\.sh")
    await executor.execute(make_context(), {"command": "./run.sh", "cwd": good})
    for cwd, message in ((str(tmp_path / "evil"), "ZEPHYR_SHELL_ALLOW"), ("good", "absolute")):
        with pytest.raises(TaskFailed, match=message) as info:
            await executor.execute(make_context(), {"command": "./run.sh", "cwd": cwd})
        assert info.value.code == "not_allowed"


SEEN = web.AppKey("seen", list)


async def serve(host: str, routes: web.RouteTableDef) -> AsyncIterator[tuple[str, list[str]]]:
    app = web.Application()
    seen: list[str] = []
    app[SEEN] = seen
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{host}:{port}", seen
    finally:
        await runner.cleanup()


def recording_routes(redirect_to: list[str]) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/{tail:.*}")
    async def anything(request: web.Request) -> web.Response:
        request.app[SEEN].append(f"{request.path} auth={request.headers.get('Authorization')}")
        if request.path == "/hop" and redirect_to:
            raise web.HTTPFound(redirect_to[0])
        if request.path.startswith("/loop"):
            raise web.HTTPFound(f"/loop{len(request.app[SEEN])}")
        return web.Response(text="ok")

    return routes


@pytest.fixture
async def first() -> AsyncIterator[tuple[str, list[str], list[str]]]:
    redirect_to: list[str] = []
    async for url, seen in serve("127.0.0.2", recording_routes(redirect_to)):
        yield url, seen, redirect_to


@pytest.fixture
async def second() -> AsyncIterator[tuple[str, list[str]]]:
    async for url, seen in serve("127.0.0.1", recording_routes([])):
        yield url, seen


async def run_http(policy: DestinationPolicy, url: str, **payload: object) -> object:
    executor = HttpExecutor(policy)
    try:
        return await executor.execute(make_context(), {"url": url, **payload})
    finally:
        await executor.close()


CLOSED = DestinationPolicy(allow_private=False)


async def test_loopback_is_refused_by_address_and_by_name(second: tuple[str, list[str]]) -> None:
    url, seen = second
    port = url.rsplit(":", 1)[1]
    for target in (url, f"http://localhost:{port}", f"http://[::ffff:127.0.0.1]:{port}"):
        with pytest.raises(RunFailure) as info:
            await run_http(CLOSED, f"{target}/x")
        assert info.value.code == "destination_refused" and not info.value.retryable, target
        assert "ZEPHYR_HTTP_ALLOW_PRIVATE=0" in str(info.value)
    assert seen == []  # nothing reached the server
    # The default (local use) reaches it.
    assert await run_http(DestinationPolicy(), f"{url}/x") is not None
    assert seen == ["/x auth=None"]


async def test_each_redirect_is_checked(
    first: tuple[str, list[str], list[str]], second: tuple[str, list[str]]
) -> None:
    first_url, first_seen, redirect_to = first
    second_url, second_seen = second
    exempt_first = DestinationPolicy(allow_private=False, exempt=networks(["127.0.0.2/32"]))
    port = second_url.rsplit(":", 1)[1]
    for target in (f"{second_url}/metadata", f"http://localhost:{port}/metadata"):
        redirect_to[:] = [target]
        with pytest.raises(RunFailure) as info:
            await run_http(exempt_first, f"{first_url}/hop")
        assert info.value.code == "destination_refused", target
    assert len(first_seen) == 2 and second_seen == []


async def test_redirects_are_capped_and_credentials_stay_with_their_origin(
    first: tuple[str, list[str], list[str]], second: tuple[str, list[str]]
) -> None:
    first_url, first_seen, redirect_to = first
    second_url, second_seen = second
    with pytest.raises(RunFailure) as info:
        await run_http(DestinationPolicy(), f"{first_url}/loop")
    assert info.value.code == "too_many_redirects"
    assert len(first_seen) == MAX_REDIRECTS + 1
    redirect_to[:] = [f"{second_url}/landed"]
    await run_http(DestinationPolicy(), f"{first_url}/hop", headers={"Authorization": "Bearer s3cret"})
    assert first_seen[-1] == "/hop auth=Bearer s3cret"
    assert second_seen == ["/landed auth=None"]  # another origin: the token is not carried over
