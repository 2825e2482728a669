"""The runner with real executors: secret masking, timeouts, and output under load."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.cluster import wait_until
from tests.support.protocol_server import assignment
from zephyr.v1 import worker_pb2 as pb
from zephyr.worker.executors.internal import InternalExecutor
from zephyr.worker.executors.shell import ShellExecutor
from zephyr.worker.outbox import Outbox
from zephyr.worker.runner import Runner

SECRET = "s3cr3t-Value-42"
ENV = {"ZEPHYR_SECRET_TOKEN": SECRET}


def make_runner(outbox: Outbox, *, log_lines_per_run: int = 10_000) -> Runner:
    executors = {"shell": ShellExecutor("*"), "internal": InternalExecutor(["tests.support.tasks.sample"])}
    return Runner(executors, outbox, capacity=10, log_lines_per_run=log_lines_per_run, environ=ENV)  # type: ignore[arg-type]


async def drain_until_done(
    outbox: Outbox, run_ids: set[str]
) -> tuple[list[pb.LogLine], dict[str, pb.Completion]]:
    lines: list[pb.LogLine] = []
    done: dict[str, pb.Completion] = {}
    while not run_ids <= done.keys():
        await asyncio.wait_for(outbox.wait(), 20)
        got_lines, got_done = outbox.take()
        lines += got_lines
        done.update((c.run_id, c) for c in got_done)
    return lines, done


async def test_secrets_are_resolved_for_the_run_and_masked_in_logs_results_and_errors() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    ref = {"$secret": "TOKEN"}
    runner.start(
        assignment(
            "sh", "shell", json.dumps({"command": 'echo "token=$T"; echo "$T" >&2', "env": {"T": ref}})
        )
    )
    runner.start(assignment("echo", "internal", json.dumps({"function": "tests.echo_secret", "args": [ref]})))
    runner.start(
        assignment("fail", "internal", json.dumps({"function": "zephyr.fail", "kwargs": {"message": ref}}))
    )
    runner.start(
        assignment(
            "missing",
            "internal",
            json.dumps({"function": "zephyr.echo", "kwargs": {"x": {"$secret": "NOPE"}}}),
        )
    )
    lines, done = await drain_until_done(outbox, {"sh", "echo", "fail", "missing"})
    everything = " ".join(x.line for x in lines) + " ".join(str(c) for c in done.values())
    assert SECRET not in everything
    assert [x.line for x in lines if x.run_id == "sh" and x.stream != pb.LOG_STREAM_SYSTEM] == [
        "token=***",
        "***",
    ]
    assert done["sh"].outcome == pb.RUN_OUTCOME_SUCCEEDED
    assert json.loads(done["echo"].result_json) == {"value": "***", "again": "<***>"}
    assert (done["fail"].outcome, done["fail"].error_message) == (pb.RUN_OUTCOME_FAILED, "***")
    assert done["missing"].error_code == "missing_secret"
    assert "ZEPHYR_SECRET_NOPE" in done["missing"].error_message


async def test_a_reference_written_with_json_escapes_is_still_resolved_and_masked() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    # "\\u0024secret" is "$secret" once decoded: the raw text never spells the key.
    payload = '{"function": "tests.echo_secret", "args": [{"\\u0024secret": "TOKEN"}]}'
    assert "$secret" not in payload
    runner.start(assignment("esc", "internal", payload))
    _, done = await drain_until_done(outbox, {"esc"})
    assert done["esc"].outcome == pb.RUN_OUTCOME_SUCCEEDED
    assert json.loads(done["esc"].result_json) == {"value": "***", "again": "<***>"}
    assert SECRET not in str(done["esc"])


async def test_a_run_printing_100000_lines_does_not_hold_up_the_others() -> None:
    outbox = Outbox(max_lines=1_000)
    outbox.set_connected(True)
    runner = make_runner(outbox, log_lines_per_run=5_000)
    runner.start(assignment("chatty", "shell", json.dumps({"command": "seq 1 100000"})))
    # Nobody drains the outbox yet: the chatty run fills the bounded buffer and waits there...
    await wait_until(lambda: _async(len(outbox._lines) >= outbox.max_lines), what="buffer full")
    runner.start(assignment("quick", "internal", '{"function": "zephyr.echo", "kwargs": {"ok": true}}'))

    # ...while another run still completes and its completion is ready to go out at once.
    async def quick_ready() -> bool:
        return outbox.has_unacked("quick")

    await wait_until(quick_ready, what="quick run completed")
    assert "chatty" in runner.runs and len(outbox._lines) <= outbox.max_lines
    lines, completions = outbox.take()
    assert [c.run_id for c in completions] == ["quick"]
    more, done = await drain_until_done(outbox, {"chatty"})
    chatty = [x for x in lines + more if x.run_id == "chatty"]
    assert len(chatty) == 5_001 and "truncated" in chatty[-1].line
    assert done["chatty"].outcome == pb.RUN_OUTCOME_SUCCEEDED  # the pipe was read to its end


async def _async(value: bool) -> bool:
    return value


async def test_timeout_is_enforced_for_internal_async_functions() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    runner.start(
        assignment("t", "internal", '{"function": "zephyr.sleep", "kwargs": {"seconds": 60}}', timeout_s=0.2)
    )
    _, done = await drain_until_done(outbox, {"t"})
    assert (done["t"].outcome, done["t"].error_code) == (pb.RUN_OUTCOME_TIMED_OUT, "timeout")
    assert "0.2s" in done["t"].error_message


async def test_an_executor_timeout_error_is_a_failure_and_no_timeout_means_none() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    runner.start(assignment("own", "internal", '{"function": "tests.raise_timeout"}', timeout_s=30))
    runner.start(
        assignment(
            "unbounded", "internal", '{"function": "zephyr.sleep", "kwargs": {"seconds": 0.3}}', timeout_s=0
        )
    )
    _, done = await drain_until_done(outbox, {"own", "unbounded"})
    assert (done["own"].outcome, done["own"].error_code) == (pb.RUN_OUTCOME_FAILED, "exception")
    assert "TimeoutError" in done["own"].error_message
    assert done["unbounded"].outcome == pb.RUN_OUTCOME_SUCCEEDED


async def test_a_function_that_swallows_the_timeout_cancel_keeps_its_result() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    runner.start(
        assignment(
            "stubborn", "internal", '{"function": "tests.stubborn", "kwargs": {"seconds": 5}}', timeout_s=0.1
        )
    )
    _, done = await drain_until_done(outbox, {"stubborn"})
    assert done["stubborn"].outcome == pb.RUN_OUTCOME_SUCCEEDED
    assert json.loads(done["stubborn"].result_json) == "kept going"


async def test_a_cancel_that_meets_the_timeout_reports_cancelled_and_abandon_reports_nothing() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    sleep = '{"function": "zephyr.sleep", "kwargs": {"seconds": 60}}'
    for run_id in ("cancel-then-deadline", "deadline-then-cancel", "deadline-then-abandon"):
        runner.start(assignment(run_id, "internal", sleep, timeout_s=30))
    await asyncio.sleep(0.05)
    # Both stops reach the task before it runs again: as with asyncio.timeout, the cancel wins.
    runner.cancel("cancel-then-deadline")
    runner._time_out(runner.runs["cancel-then-deadline"])
    runner._time_out(runner.runs["deadline-then-cancel"])
    runner.cancel("deadline-then-cancel")
    runner._time_out(runner.runs["deadline-then-abandon"])
    runner.abandon("deadline-then-abandon")
    _, done = await drain_until_done(outbox, {"cancel-then-deadline", "deadline-then-cancel"})
    assert done["cancel-then-deadline"].outcome == pb.RUN_OUTCOME_CANCELLED
    assert done["deadline-then-cancel"].outcome == pb.RUN_OUTCOME_CANCELLED
    await wait_until(lambda: _async(not runner.runs), what="all runs ended")
    assert not outbox.has_unacked("deadline-then-abandon")
    assert len(runner._deadlines) == 0  # every run's deadline was removed with it


async def test_duplicate_assignment_is_ignored_and_bad_json_is_not_retryable() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    runner.start(assignment("d", "internal", '{"function": "zephyr.sleep", "kwargs": {"seconds": 0.1}}'))
    runner.start(assignment("d", "internal", '{"function": "zephyr.sleep", "kwargs": {"seconds": 0.1}}'))
    assert runner.running == 1
    runner.start(assignment("j", "internal", "{not json"))
    _, done = await drain_until_done(outbox, {"d", "j"})
    assert (done["j"].error_code, done["j"].retryable) == ("invalid_payload", False)


async def test_nul_characters_never_reach_logs_or_results() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    runner.start(assignment("nul", "shell", json.dumps({"command": r"printf 'a\000b\n'"})))
    runner.start(
        assignment(
            "echo", "internal", json.dumps({"function": "zephyr.echo", "kwargs": {"k\u0000": "v\u0000"}})
        )
    )
    lines, done = await drain_until_done(outbox, {"nul", "echo"})
    assert [x.line for x in lines if x.run_id == "nul" and x.stream == pb.LOG_STREAM_STDOUT] == ["a\ufffdb"]
    assert json.loads(done["echo"].result_json) == {"k\ufffd": "v\ufffd"}


async def run_shell_with_secrets(command: str, env: dict[str, str], **secrets: str) -> list[str]:
    """The log lines of one shell run whose `env` names resolve to `secrets` (as references)."""
    outbox = Outbox()
    outbox.set_connected(True)
    environ = {f"ZEPHYR_SECRET_{name}": value for name, value in secrets.items()}
    runner = Runner(
        {"shell": ShellExecutor("*")}, outbox, capacity=1, log_lines_per_run=1000, environ=environ
    )  # type: ignore[dict-item]
    payload = {"command": command, "env": {key: {"$secret": name} for key, name in env.items()}}
    runner.start(assignment("run", "shell", json.dumps(payload)))
    lines, done = await drain_until_done(outbox, {"run"})
    assert done["run"].outcome == pb.RUN_OUTCOME_SUCCEEDED, done["run"]
    return [x.line for x in lines if x.stream != pb.LOG_STREAM_SYSTEM]


async def test_a_pem_key_logged_line_by_line_is_masked_on_every_line() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    body = pem.strip().splitlines()[1:-1]
    assert len(body) >= 2
    lines = await run_shell_with_secrets('printf "%s\\n" "$K"', {"K": "KEY"}, KEY=pem)
    assert [line for line in lines if line] == ["***"] * (len(body) + 2), lines
    logged = "\n".join(lines)
    assert not any(part in logged for part in body)


@pytest.fixture
async def http_target() -> AsyncIterator[str]:
    """A real HTTP server on a free loopback port that answers 200 to anything."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def logged_with_password(command: str, password: str) -> str:
    """The log of a shell run of `command` with the secret `password` in its variable PW."""
    return "\n".join(await run_shell_with_secrets(command, {"PW": "PW"}, PW=password))


async def test_curl_verbose_basic_auth_and_base64_of_a_secret_are_masked(http_target: str) -> None:
    password = "Tr0ub4dor&3-horse"
    logged = await logged_with_password(
        f'curl -sv -u "alice:$PW" {http_target}/ -o /dev/null; printf %s "$PW" | base64', password
    )
    assert "Authorization: Basic" in logged  # curl -v did print the header...
    assert base64.b64encode(f"alice:{password}".encode()).decode() not in logged  # ...masked
    assert base64.b64encode(password.encode()).decode() not in logged
    assert password not in logged
    assert logged.count("***") >= 2


async def test_a_url_encoded_secret_is_masked(http_target: str) -> None:
    password = "p@ss/w:rd&x=1 ä"
    logged = await logged_with_password(
        f'curl -sv -G --data-urlencode "pw=$PW" {http_target}/login -o /dev/null', password
    )
    assert "GET /login?pw=" in logged
    assert urllib.parse.quote(password, safe="") not in logged
    assert "GET /login?pw=*** HTTP" in logged


async def test_an_assignment_reaching_a_draining_worker_is_handed_back_unstarted() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    drained = asyncio.create_task(runner.drain(30))
    await asyncio.sleep(0)
    # In transit when the worker began to stop: before the fix it started (and was then
    # abandoned silently at shutdown, left to the lease).
    runner.start(
        assignment("late", "internal", json.dumps({"function": "zephyr.sleep", "kwargs": {"seconds": 30}}))
    )
    assert runner.running == 0
    _lines, completions = outbox.take()
    [handed_back] = completions
    assert (handed_back.run_id, handed_back.outcome, handed_back.error_code) == (
        "late",
        pb.RUN_OUTCOME_CANCELLED,
        "not_started",
    )
    await drained
