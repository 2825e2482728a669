"""Property: whatever JSON reaches POST /v1/tasks, the answer is never 5xx, and the table grows by
exactly one row on 201 and by none otherwise (never a partial write)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support.api_server import Api, running_api

T = TypeVar("T")

TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
PLAUSIBLE = st.sampled_from(
    [
        "http://127.0.0.1:9/", "GET", "POST", "zephyr.noop", "a@b.c", "ls", "redis", "postgres",
        "*/5 * * * *", "0 0 30 2 *", "61 * * * *", "Europe/Paris", "Mars/Base", "UTC",
        "2030-01-01T00:00:00Z", "2001-01-01T00:00:00+02:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
        1e308, -1, 0, 0.0001, 10**9, 3600, 200, [200, 201], {"$secret": "NAME"}, {"$secret": ""},
    ]
)  # fmt: skip
VALUES = PLAUSIBLE | JSON
PAYLOAD_KEYS = st.sampled_from(
    [
        "method", "url", "headers", "body", "expect_status", "timeout_s", "follow_redirects", "to", "subject",
        "html", "from", "cc", "bcc", "command", "argv", "env", "cwd", "function", "args", "kwargs", "channel",
        "message", "backend",
    ]
) | TEXT  # fmt: skip
SCHEDULE_KEYS = (
    st.sampled_from(["at", "delay_s", "cron", "timezone", "every_s", "start_at", "end_at", "overlap"]) | TEXT
)
TASKS = st.fixed_dictionaries(
    {"type": st.sampled_from(["http", "email", "shell", "internal", "publish"]) | VALUES},
    optional={
        "payload": st.dictionaries(PAYLOAD_KEYS, VALUES, max_size=6) | VALUES,
        "schedule": st.dictionaries(SCHEDULE_KEYS, VALUES, max_size=4) | VALUES,
        "name": VALUES,
        "priority": VALUES,
        "max_attempts": VALUES,
        "timeout_s": VALUES,
        "idempotency_key": VALUES,
        "extra": VALUES,
    },
)
VALID = [
    {"type": "http", "payload": {"url": "http://127.0.0.1:9/", "method": "POST", "body": {"a": 1}}},
    {"type": "email", "payload": {"to": ["a@b.c"], "subject": "s", "body": "b"}, "name": "mail"},
    {"type": "shell", "payload": {"argv": ["true"]}, "schedule": {"cron": "*/5 * * * *", "timezone": "UTC"}},
    {
        "type": "internal",
        "payload": {"function": "zephyr.noop"},
        "schedule": {"every_s": 60, "overlap": True},
    },
    {
        "type": "publish",
        "payload": {"channel": "c", "message": "m"},
        "schedule": {"delay_s": 5},
        "priority": 3,
    },
]


@st.composite
def mutated_tasks(draw: st.DrawFn) -> dict[str, Any]:
    """A valid task, then (mostly) one field of it, of its payload or of its schedule replaced or removed."""
    task = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    part = draw(st.sampled_from(["none", "none", "task", "payload", "schedule"]))
    if part == "none":
        return task  # type: ignore[no-any-return]
    target = task if part == "task" else task.setdefault(part, {})
    if not isinstance(target, dict):
        return task  # type: ignore[no-any-return]
    keys = {"task": TASK_KEYS, "payload": PAYLOAD_KEYS, "schedule": SCHEDULE_KEYS}[part]
    key = draw(keys)
    if draw(st.booleans()) and key in target:
        del target[key]
    else:
        target[key] = draw(VALUES)
    return task  # type: ignore[no-any-return]


TASK_KEYS = (
    st.sampled_from(
        ["type", "payload", "schedule", "name", "priority", "max_attempts", "timeout_s", "idempotency_key"]
    )
    | TEXT
)
BODIES = st.one_of(mutated_tasks(), mutated_tasks(), mutated_tasks(), TASKS, JSON)


class BackgroundApi:
    """The API served from an event loop in a thread, so that sync hypothesis tests can call it."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.context = running_api(database_url)
        self.api: Api = self.run(self.context.__aenter__())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.run(self.context.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def post(self, body: Any, path: str = "/v1/tasks", method: str = "POST") -> tuple[int, Any, int]:
        """(status, answer, rows added) of one request."""

        async def go() -> tuple[int, Any, int]:
            before = await self.api.pool.fetchval("SELECT count(*) FROM tasks")
            status, answer = await self.api.call(method, path, json=body)
            after = await self.api.pool.fetchval("SELECT count(*) FROM tasks")
            return status, answer, after - before

        return self.run(go())

    def table(self) -> list[Any]:
        return self.run(self.api.pool.fetch("SELECT * FROM tasks ORDER BY id"))


@pytest.fixture
def background_api(database_url: str) -> Iterator[BackgroundApi]:
    api = BackgroundApi(database_url)
    yield api
    api.close()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_random_json_never_5xx_and_never_half_written(background_api: BackgroundApi, body: Any) -> None:
    status, answer, added = background_api.post(body)
    event(f"status {status}")
    assert status < 500, (status, answer)
    if status in (200, 201):
        assert added == (1 if status == 201 else 0)
        if status == 201:
            assert answer["type"] == body["type"]
        else:  # a repeated idempotency key answers the task that had it first, whatever its type
            assert answer["idempotency_key"] == body["idempotency_key"]
        assert answer["id"] and answer["status"] == "pending"
    else:
        assert added == 0
        assert set(answer) == {"error"} and {"code", "message"} <= set(answer["error"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tasks=st.lists(mutated_tasks(), min_size=1, max_size=5) | JSON)
def test_random_batches_are_all_or_nothing(background_api: BackgroundApi, tasks: Any) -> None:
    keys = (
        [task.get("idempotency_key") for task in tasks if isinstance(task, dict)]
        if isinstance(tasks, list)
        else []
    )
    known = {row["idempotency_key"] for row in background_api.table()}
    status, answer, added = background_api.post({"tasks": tasks}, "/v1/tasks/batch")
    event(f"status {status}")
    assert status < 500, (status, answer)
    if status == 201:
        repeats = sum(1 for key in keys if key is not None and key in known)  # answered with the first task
        assert added == len(tasks) - repeats and len(answer["ids"]) == len(tasks)
    else:
        assert added == 0 and "error" in answer


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    patch=st.dictionaries(st.sampled_from(["schedule", "payload", "priority", "max_attempts"]) | TEXT, VALUES)
)
def test_random_patches_never_5xx_and_change_nothing_when_refused(
    background_api: BackgroundApi, patch: Any
) -> None:
    status, task, _ = background_api.post(VALID[3])
    assert status == 201
    before = background_api.table()
    status, answer, added = background_api.post(patch, f"/v1/tasks/{task['id']}", "PATCH")
    event(f"status {status}")
    assert status < 500, (status, answer)
    assert added == 0
    if status != 200:
        assert background_api.table() == before
