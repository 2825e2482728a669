"""zephyr.client: the sync client (in a thread, as a script would use it) and the async one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tests.support.api_server import Api, running_api
from zephyr.client import ApiError, AsyncClient, Client

TASK = {"type": "internal", "payload": {"function": "zephyr.noop"}}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as api:
        yield api


async def test_sync_client(api: Api) -> None:
    def script() -> None:
        with Client(api.base) as client:
            task = client.submit({**TASK, "name": "one"}, idempotency_key="sync-1")
            assert client.submit(TASK, idempotency_key="sync-1")["id"] == task["id"]
            ids = client.submit_batch([TASK] * 5, idempotency_key="b")
            assert client.submit_batch([TASK] * 5, idempotency_key="b") == ids
            assert client.get_task(task["id"])["name"] == "one"
            assert len(list(client.iter_tasks(limit=2))) == 6  # pages of 2 followed to the end
            assert client.pause(task["id"])["status"] == "paused"
            assert client.resume(task["id"])["status"] == "pending"
            assert client.patch_task(task["id"], {"priority": 4})["priority"] == 4
            assert client.cancel(task["id"])["status"] == "cancelled"
            with pytest.raises(ApiError) as caught:
                client.retry(task["id"])
            assert (caught.value.status, caught.value.code) == (409, "conflict")
            with pytest.raises(ApiError) as caught:
                client.get_task(str(uuid.uuid4()))
            assert caught.value.status == 404
            assert client.list_runs(task["id"]) == {"runs": [], "next_cursor": None}
            assert client.stats()["tasks"]["cancelled"] == 1
            assert client.workers() == []
            assert client.ready()

    await asyncio.to_thread(script)


async def test_the_clients_send_a_trace_context(api: Api) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with AsyncClient(api.base) as client:
        assert (await client.submit(TASK, traceparent=traceparent))["traceparent"] == traceparent
        (task_id,) = await client.submit_batch([TASK], traceparent=traceparent)
        assert (await client.get_task(task_id))["traceparent"] == traceparent

    def script() -> None:
        with Client(api.base) as client:
            assert client.submit(TASK, traceparent=traceparent)["traceparent"] == traceparent
            (task_id,) = client.submit_batch([TASK], idempotency_key="t", traceparent=traceparent)
            assert client.get_task(task_id)["traceparent"] == traceparent

    await asyncio.to_thread(script)


async def test_async_client_errors_carry_the_field(api: Api) -> None:
    async with AsyncClient(api.base) as client:
        with pytest.raises(ApiError) as caught:
            await client.submit({**TASK, "schedule": {"cron": "nope"}})
        assert (caught.value.code, caught.value.field) == ("invalid_schedule", "schedule.cron")


async def test_unreachable_api_is_an_api_error_with_status_0() -> None:
    from tests.support.cluster import free_port

    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ApiError) as caught:
            await client.stats()
        assert caught.value.status == 0 and caught.value.code == "unreachable"
        assert not await client.ready()
