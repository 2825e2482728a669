"""The publish executor: PostgreSQL NOTIFY (LISTEN on the test database) and Redis PUBLISH."""

from __future__ import annotations

import asyncio
import socket

import asyncpg
import pytest

from tests.support.cluster import free_port, wait_until
from tests.support.worker import make_context
from zephyr.errors import TaskFailed
from zephyr.worker.executors.base import RunFailure
from zephyr.worker.executors.publish import PublishExecutor

REDIS = ("127.0.0.1", 6379)


def redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=0.5):
            return True
    except OSError:
        return False


async def test_postgres_notify_reaches_a_listener(database_url: str) -> None:
    listener = await asyncpg.connect(database_url)
    got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    await listener.add_listener("app_test_channel", lambda _c, _p, ch, payload: got.put_nowait((ch, payload)))
    executor = PublishExecutor(database_url, None)
    try:
        result = await executor.execute(make_context(), {"channel": "app_test_channel", "message": {"n": 1}})
        assert result == {"backend": "postgres", "channel": "app_test_channel"}
        assert await asyncio.wait_for(got.get(), 5) == ("app_test_channel", '{"n":1}')
        await executor.execute(make_context(), {"channel": "app_test_channel", "message": "text as is"})
        assert await asyncio.wait_for(got.get(), 5) == ("app_test_channel", "text as is")
    finally:
        await executor.close()
        await listener.close()


async def test_postgres_connection_is_reopened_after_it_breaks(database_url: str, pg_admin_dsn: str) -> None:
    executor = PublishExecutor(database_url, None)
    try:
        await executor.execute(make_context(), {"channel": "c1", "message": "a"})
        conn = executor._pg
        assert conn is not None
        old_pid = conn.get_server_pid()
        admin = await asyncpg.connect(pg_admin_dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", old_pid)
        finally:
            await admin.close()
        await wait_until(lambda: _async(conn.is_closed()), timeout=10, what="connection closed")
        assert await executor.execute(make_context(), {"channel": "c1", "message": "b"}) == {
            "backend": "postgres",
            "channel": "c1",
        }
        assert executor._pg is not None and executor._pg.get_server_pid() != old_pid
    finally:
        await executor.close()


async def _async(value: bool) -> bool:
    return value


async def test_unreachable_database_is_a_retryable_publish_error() -> None:
    executor = PublishExecutor(f"postgresql://postgres@127.0.0.1:{free_port()}/none", None)
    with pytest.raises(RunFailure) as info:
        await executor.execute(make_context(), {"channel": "c1", "message": "a"})
    assert info.value.code == "publish_error" and info.value.retryable


@pytest.mark.skipif(not redis_answers(), reason="Redis does not answer on 127.0.0.1:6379")
async def test_redis_publish_reaches_a_subscriber() -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url("redis://127.0.0.1:6379/0")
    pubsub = client.pubsub()
    await pubsub.subscribe("zephyr-test-publish")
    await pubsub.get_message(timeout=2)  # the subscribe confirmation
    executor = PublishExecutor(None, "redis://127.0.0.1:6379/0")
    try:
        result = await executor.execute(
            make_context(), {"channel": "zephyr-test-publish", "message": {"x": "y"}}
        )
        assert result == {"backend": "redis", "channel": "zephyr-test-publish", "receivers": 1}
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                break
        assert message is not None and message["data"] == b'{"x":"y"}'
    finally:
        await executor.close()
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis leaves it unannotated
        await client.aclose()


async def test_backend_choice_and_bad_payloads(database_url: str) -> None:
    executor = PublishExecutor(database_url, None)
    try:
        with pytest.raises(RunFailure) as info:
            await executor.execute(make_context(), {"channel": "c", "message": "m", "backend": "redis"})
        assert info.value.code == "backend_unavailable"
        for payload, field in (
            ({"message": "m"}, "payload.channel"),
            ({"channel": "c"}, "payload.message"),
            ({"channel": "c", "message": "m", "backend": "kafka"}, "payload.backend"),
            ({"channel": "c" * 64, "message": "m"}, "payload.channel"),
            ({"channel": "c", "message": "m" * 8000}, "payload.message"),
        ):
            with pytest.raises(TaskFailed) as err:
                await executor.execute(make_context(), payload)
            assert str(err.value).startswith(field), err.value
    finally:
        await executor.close()


async def test_reserved_channels_are_refused_by_the_worker_even_behind_a_secret(database_url: str) -> None:
    """A task publishing worker ids on zephyr_drain drained the fleet; run ids on zephyr_cancel
    killed other tasks' runs. The worker refuses those channels, however the name reaches it."""
    listener = await asyncpg.connect(database_url)
    heard: list[str] = []
    for channel in ("zephyr_drain", "zephyr_cancel", "zephyr_tasks"):
        await listener.add_listener(channel, lambda _c, _p, ch, _payload: heard.append(ch))
    executor = PublishExecutor(database_url, None)
    try:
        for channel in ("zephyr_drain", "ZEPHYR_CANCEL", "zephyr_tasks"):
            with pytest.raises(TaskFailed) as err:
                await executor.execute(make_context(), {"channel": channel, "message": "worker-1"})
            assert str(err.value).startswith("payload.channel: channels named zephyr_* are the cluster's own")
            assert err.value.code == "invalid_payload" and err.value.retryable is False
        # A channel the cluster does not use goes through, and is heard: the listener works.
        await listener.add_listener("app_events", lambda _c, _p, ch, _payload: heard.append(ch))
        await executor.execute(make_context(), {"channel": "app_events", "message": "ok"})
        await wait_until(lambda: _async(heard == ["app_events"]), what="app_events heard")
    finally:
        await executor.close()
        await listener.close()
