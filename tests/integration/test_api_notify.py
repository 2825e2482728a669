"""Single POSTs notify coordinators in their transaction when alone, else after their commit,
folding the due times of concurrent ones into fewer notifications."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.api_server import Api, running_api
from zephyr.db.pool import connect, create_pool
from zephyr.scheduler.http import NOTIFIER
from zephyr.scheduler.notifier import DueNotifier

FUTURE = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as api:
        yield api


def task_at(when: datetime) -> dict[str, object]:
    return {
        "type": "internal",
        "payload": {"function": "zephyr.noop"},
        "schedule": {"at": when.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_the_row_is_committed_when_its_notification_arrives(api: Api, database_url: str) -> None:
    listener = await connect(database_url)
    seen: asyncio.Queue[int] = asyncio.Queue()
    looking: set[asyncio.Task[None]] = set()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        # What a coordinator does on the notice: look for rows due then, from another session.
        async def look() -> None:
            found = await api.pool.fetchval(
                "SELECT count(*) FROM tasks WHERE next_run_at = $1", parse(payload)
            )
            seen.put_nowait(found)

        task = asyncio.get_running_loop().create_task(look())
        looking.add(task)
        task.add_done_callback(looking.discard)

    await listener.add_listener("zephyr_tasks", on_notify)
    try:
        for n in range(5):  # one at a time: each notifies in its own transaction
            status, body = await api.call("POST", "/v1/tasks", json=task_at(FUTURE + timedelta(seconds=n)))
            assert status == 201, body
            assert await asyncio.wait_for(seen.get(), 10) == 1
        assert api_notifier(api).sent == 0
        # Overlapping ones are notified after their commits: their rows are there too.
        dues = [FUTURE + timedelta(minutes=1, seconds=n) for n in range(50)]
        results = await asyncio.gather(*(api.call("POST", "/v1/tasks", json=task_at(d)) for d in dues))
        assert all(status == 201 for status, _ in results)
        await api_notifier(api).close()
        assert api_notifier(api).sent >= 1
        await listener.execute("SELECT 1")  # a round trip delivers pending notifications
        await asyncio.gather(*looking)
        found = [seen.get_nowait() for _ in range(seen.qsize())]
        assert found and all(count == 1 for count in found)
    finally:
        await listener.close()


async def test_concurrent_posts_fold_into_fewer_notifications_carrying_the_earliest(
    api: Api, database_url: str
) -> None:
    listener = await connect(database_url)
    notes: list[str] = []
    await listener.add_listener("zephyr_tasks", lambda *args: notes.append(args[3]))
    try:
        dues = [FUTURE + timedelta(seconds=n) for n in range(200)]
        results = await asyncio.gather(*(api.call("POST", "/v1/tasks", json=task_at(d)) for d in dues))
        assert all(status == 201 for status, _ in results)
        notifier = api_notifier(api)
        await notifier.close()  # what is folded is sent before close returns
        await listener.execute("SELECT 1")  # a round trip delivers pending notifications
        assert notifier.sent >= 1
        assert min(parse(note) for note in notes) == min(dues)
        # Folding happened: 200 requests in flight at once never needed 200 notifications.
        assert len(notes) < len(dues)
    finally:
        await listener.close()


async def test_a_repeated_idempotency_key_sends_no_notification(api: Api) -> None:
    task = {**task_at(FUTURE), "idempotency_key": "once"}
    assert (await api.call("POST", "/v1/tasks", json=task))[0] == 201
    notifier = api_notifier(api)
    await notifier.close()
    sent = notifier.sent
    assert (await api.call("POST", "/v1/tasks", json=task))[0] == 200
    await notifier.close()
    assert notifier.sent == sent


async def test_a_failed_notification_is_logged_and_never_raised(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    notifier = DueNotifier(pool)
    await pool.close()  # the database is out of reach for it
    with caplog.at_level(logging.WARNING, logger="zephyr.scheduler.notifier"):
        notifier.due(FUTURE)
        notifier.due(FUTURE - timedelta(seconds=1))
        await notifier.close()
    assert notifier.sent == 0
    assert "coordinators will find them by polling" in caplog.text


def api_notifier(api: Api) -> DueNotifier:
    return api.app[NOTIFIER]


async def test_close_gives_up_on_a_notification_that_cannot_go(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire():  # the notifier's only connection is taken: its NOTIFY waits
            notifier = DueNotifier(pool)
            notifier.due(FUTURE)
            started = asyncio.get_running_loop().time()
            await notifier.close(timeout_s=0.2)
            assert asyncio.get_running_loop().time() - started < 2
            assert notifier.sent == 0
    finally:
        await pool.close()
