"""`@zephyr.task("name")`: the registry of functions the `internal` task type can call.

Neutral ground: the worker looks functions up here, and `import zephyr` (which user modules do for
the decorator) loads this module alone, nothing of the services.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

MAX_NAME_CHARS = 200
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_NAME = re.compile(NAME_PATTERN)

# name -> function (sync or async); filled by decorators at import time.
REGISTRY: dict[str, Callable[..., Any]] = {}


@functools.lru_cache(maxsize=1024)
def _matches(name: str) -> bool:
    # Cached: the tasks of a batch name the same few functions.
    return _NAME.fullmatch(name) is not None


def is_function_name(name: object) -> bool:
    """Whether `name` can name a function: ASCII identifiers joined by dots, at most 200 characters.

    The one rule for both sides: the API refuses an `internal` task naming anything else, and
    `task` refuses to register it.
    """
    return isinstance(name, str) and len(name) <= MAX_NAME_CHARS and _matches(name)


def task(name: str) -> Callable[[F], F]:
    """Register the decorated function (sync or async) as the internal task `name`.

    Names are dotted identifiers (`reports.build`). Registering a second, different function
    under a taken name raises ValueError, so two modules cannot silently shadow each other.
    """
    if not is_function_name(name):
        raise ValueError(f"task name {name!r} must be a dotted identifier such as 'reports.build'")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@task({name!r}) must decorate a function")
        existing = REGISTRY.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"task {name!r} is already registered by {existing.__module__}")
        REGISTRY[name] = fn
        return fn

    return decorate


def lookup(name: str) -> Callable[..., Any] | None:
    """The function registered as `name`, or None."""
    return REGISTRY.get(name)
