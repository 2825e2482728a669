from __future__ import annotations

import pytest

import zephyr
from zephyr.functions import REGISTRY, lookup


def test_decorator_registers_sync_and_async_functions() -> None:
    @zephyr.task("tests.registry.sync_fn")
    def sync_fn(x: int) -> int:
        return x + 1

    @zephyr.task("tests.registry.async_fn")
    async def async_fn() -> None:
        return None

    assert lookup("tests.registry.sync_fn") is sync_fn
    assert lookup("tests.registry.async_fn") is async_fn
    assert sync_fn(1) == 2  # the decorator returns the function unchanged


def test_a_taken_name_cannot_be_registered_by_another_function() -> None:
    @zephyr.task("tests.registry.taken")
    def first() -> None: ...

    zephyr.task("tests.registry.taken")(first)  # the same function again is fine
    with pytest.raises(ValueError, match="already registered"):

        @zephyr.task("tests.registry.taken")
        def second() -> None: ...


@pytest.mark.parametrize("name", ["", "has space", "1starts.with.digit", "trailing.", None])
def test_bad_names_are_refused(name: object) -> None:
    with pytest.raises(ValueError, match="dotted identifier"):
        zephyr.task(name)  # type: ignore[arg-type]


def test_builtins_are_registered_once_the_internal_executor_is_loaded() -> None:
    import zephyr.worker.executors.internal  # noqa: F401

    assert {"zephyr.noop", "zephyr.sleep", "zephyr.fail", "zephyr.echo"} <= set(REGISTRY)
