"""The internal executor: registered sync and async functions, built-ins, failures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.worker import make_context
from zephyr.errors import StartupError, TaskFailed
from zephyr.worker.executors.internal import InternalExecutor


@pytest.fixture
async def executor() -> AsyncIterator[InternalExecutor]:
    ex = InternalExecutor(["tests.support.tasks.sample"])
    yield ex
    await ex.close()


async def test_sync_function_runs_in_the_thread_pool(executor: InternalExecutor) -> None:
    assert await executor.execute(make_context(), {"function": "tests.add", "args": [2, 3]}) == 5
    assert (await executor.execute(make_context(), {"function": "tests.thread_name"})).startswith(
        "zephyr-task"
    )


async def test_async_function_with_kwargs(executor: InternalExecutor) -> None:
    result = await executor.execute(
        make_context(), {"function": "tests.async_greet", "kwargs": {"name": "z"}}
    )
    assert result == {"greeting": "hello z"}


async def test_builtins(executor: InternalExecutor) -> None:
    assert await executor.execute(make_context(), {"function": "zephyr.noop"}) is None
    assert await executor.execute(make_context(), {"function": "zephyr.echo", "kwargs": {"a": [1]}}) == {
        "a": [1]
    }
    assert await executor.execute(
        make_context(), {"function": "zephyr.sleep", "kwargs": {"seconds": 0.01}}
    ) == {"slept_s": 0.01}
    with pytest.raises(TaskFailed, match="on purpose!") as info:
        await executor.execute(
            make_context(), {"function": "zephyr.fail", "kwargs": {"message": "on purpose!"}}
        )
    assert info.value.code == "failed" and info.value.retryable


async def test_an_exception_fails_with_its_type_and_message(executor: InternalExecutor) -> None:
    with pytest.raises(TaskFailed) as info:
        await executor.execute(make_context(), {"function": "tests.boom", "args": ["bad thing"]})
    assert str(info.value) == "ValueError: bad thing"
    assert info.value.code == "exception"


async def test_wrong_arguments_are_an_exception_too(executor: InternalExecutor) -> None:
    with pytest.raises(TaskFailed) as info:
        await executor.execute(make_context(), {"function": "tests.add", "args": [1]})
    assert str(info.value).startswith("TypeError:")


async def test_unknown_function_result_not_json_and_bad_fields(executor: InternalExecutor) -> None:
    with pytest.raises(TaskFailed) as info:
        await executor.execute(make_context(), {"function": "nope.nothing"})
    assert info.value.code == "unknown_function" and "payload.function" in str(info.value)
    with pytest.raises(TaskFailed) as info:
        await executor.execute(make_context(), {"function": "tests.not_json"})
    assert info.value.code == "invalid_result" and not info.value.retryable
    for payload, field in (
        ({"function": "zephyr.noop", "args": {}}, "payload.args"),
        ({"function": "zephyr.noop", "kwargs": []}, "payload.kwargs"),
        ({"args": []}, "payload.function"),
    ):
        with pytest.raises(TaskFailed) as info:
            await executor.execute(make_context(), payload)
        assert str(info.value).startswith(field)


def test_an_import_that_fails_stops_the_worker_naming_the_module() -> None:
    with pytest.raises(StartupError, match="ZEPHYR_WORKER_IMPORTS: cannot import no_such_module_xyz"):
        InternalExecutor(["no_such_module_xyz"])
