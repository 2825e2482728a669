"""The shell executor with real subprocesses."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.support.cluster import wait_until
from tests.support.worker import RecordedLogs, make_context, process_alive
from zephyr.errors import TaskFailed
from zephyr.worker.executors.base import LogStream, RunFailure
from zephyr.worker.executors.shell import ShellExecutor

SPAWN_TREE = "sleep 300 & echo $! > {pids}; sh -c 'sleep 300' & echo $! >> {pids}; echo started; wait"


async def test_stdout_and_stderr_become_log_lines_and_exit_0_succeeds() -> None:
    logs = RecordedLogs()
    result = await ShellExecutor("*").execute(
        make_context(logs), {"command": "echo one; echo two >&2; printf 'no newline'"}
    )
    assert result == {"exit_code": 0}
    assert logs.text(LogStream.STDOUT) == ["one", "no newline"]
    assert logs.text(LogStream.STDERR) == ["two"]


async def test_lines_arrive_while_the_command_still_runs(tmp_path: Path) -> None:
    logs = RecordedLogs()
    gate = tmp_path / "gate"
    task = asyncio.create_task(
        ShellExecutor("*").execute(
            make_context(logs),
            {"command": f"echo early; while [ ! -e {gate} ]; do sleep 0.05; done; echo late"},
        )
    )
    await wait_until(lambda: _async("early" in logs.text(LogStream.STDOUT)), timeout=10, what="early line")
    assert "late" not in logs.text(LogStream.STDOUT)
    gate.touch()
    await asyncio.wait_for(task, 10)
    assert logs.text(LogStream.STDOUT) == ["early", "late"]


async def _async(value: bool) -> bool:
    return value


async def test_non_zero_exit_fails_with_the_code_in_the_result() -> None:
    with pytest.raises(RunFailure) as info:
        await ShellExecutor("*").execute(make_context(), {"command": "exit 7"})
    assert info.value.code == "exit_code"
    assert info.value.result == {"exit_code": 7}
    assert info.value.retryable


async def test_argv_env_and_cwd(tmp_path: Path) -> None:
    logs = RecordedLogs()
    os.environ["ZEPHYR_SECRET_SHOULD_NOT_LEAK"] = "leak"
    try:
        await ShellExecutor("*").execute(
            make_context(logs),
            {
                "argv": ["/bin/sh", "-c", 'pwd; echo "$GREETING"; env | grep -c ^ZEPHYR_ || true'],
                "env": {"GREETING": "hi there"},
                "cwd": str(tmp_path),
            },
        )
    finally:
        del os.environ["ZEPHYR_SECRET_SHOULD_NOT_LEAK"]
    assert logs.text(LogStream.STDOUT) == [str(tmp_path), "hi there", "0"]


async def test_the_command_gets_the_run_trace_context_unless_its_env_sets_one() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    show = {"argv": ["/bin/sh", "-c", 'echo "[$TRACEPARENT]"']}
    for env, expected in (({}, traceparent), ({"TRACEPARENT": "own"}, "own")):
        logs = RecordedLogs()
        context = make_context(logs)._replace(traceparent=traceparent)
        await ShellExecutor("*").execute(context, {**show, "env": env})
        assert logs.text(LogStream.STDOUT) == [f"[{expected}]"]
    logs = RecordedLogs()
    await ShellExecutor("*").execute(make_context(logs), show)
    assert logs.text(LogStream.STDOUT) == [f"[{os.environ.get('TRACEPARENT', '')}]"]


async def test_a_command_the_pattern_rejects_fails_at_once_not_retryable(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    executor = ShellExecutor(r"echo [a-z ]+")
    assert await executor.execute(make_context(), {"command": "echo hello world"}) == {"exit_code": 0}
    # fullmatch: an allowed prefix does not let a second command through
    for payload in ({"command": f"echo hi; touch {marker}"}, {"argv": ["touch", str(marker)]}):
        with pytest.raises(TaskFailed) as info:
            await executor.execute(make_context(), payload)
        assert info.value.code == "not_allowed"
        assert info.value.retryable is False
    assert not marker.exists()


async def test_missing_program_and_bad_payloads() -> None:
    executor = ShellExecutor("*")
    with pytest.raises(RunFailure) as info:
        await executor.execute(make_context(), {"argv": ["/nonexistent/prog"]})
    assert info.value.code == "not_found" and "payload.argv" in str(info.value)
    for payload, field in (
        # The payload as a whole, as the API names it: neither or both of command and argv.
        ({}, "payload: "),
        ({"command": "true", "argv": ["true"]}, "payload: "),
        ({"command": "  "}, "payload.command"),
        ({"argv": []}, "payload.argv"),
        ({"command": "true", "env": {"A": 1}}, "payload.env"),
    ):
        with pytest.raises(TaskFailed) as err:
            await executor.execute(make_context(), payload)
        assert str(err.value).startswith(field), err.value


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_cancel_and_timeout_kill_the_whole_process_group(tmp_path: Path, how: str) -> None:
    pids_file = tmp_path / "pids"
    logs = RecordedLogs()
    run = ShellExecutor("*").execute(make_context(logs), {"command": SPAWN_TREE.format(pids=pids_file)})
    if how == "timeout":
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await run
    else:
        task = asyncio.create_task(run)
        await wait_until(lambda: _async("started" in logs.text(LogStream.STDOUT)), timeout=10, what="start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    pids = [int(p) for p in pids_file.read_text().split()]
    leader = int(logs.text(LogStream.SYSTEM)[0].split()[-1])
    assert len(pids) == 2
    # Reaping by init may lag a moment: wait for the real signal rather than sleeping.
    await wait_until(
        lambda: _async(not any(process_alive(p) for p in [leader, *pids])), timeout=10, what="group gone"
    )


async def test_an_over_long_line_is_cut_and_the_next_line_survives() -> None:
    from zephyr.worker.executors.shell import MAX_LINE_BYTES

    logs = RecordedLogs()
    size = MAX_LINE_BYTES * 5
    await ShellExecutor("*").execute(
        make_context(logs),
        {"command": f'awk \'BEGIN {{ for (i = 0; i < {size}; i++) printf "a"; print ""; print "next" }}\''},
    )
    out = logs.text(LogStream.STDOUT)
    assert out == ["a" * MAX_LINE_BYTES + " [line cut]", "next"]
