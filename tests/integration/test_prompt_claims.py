"""Due work never waits for the fallback poll (issue 13).

Every coordinator here polls once an hour (ZEPHYR_POLL_S=3600): a task dispatched within a test's
timeout can only have come through the prompt path (a notification, a freed slot, the timer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.integration.test_coordinator import dispatcher_quiet
from tests.support.fake_worker import FakeWorker, insert_tasks, running_coordinator
from zephyr import taskstore
from zephyr.db.pool import connect
from zephyr.db.queries import QUERIES
from zephyr.errors import Conflict

HOUR = "3600"


async def test_a_worker_that_reconnects_full_gets_due_work_when_a_slot_frees(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with (
        running_coordinator(database_url, ZEPHYR_POLL_S=HOUR) as first_coord,
        running_coordinator(database_url, ZEPHYR_POLL_S=HOUR) as coord,
        # Another group of workers with room keeps this coordinator's claim loop claiming (for its
        # own types, so the timer it sets covers those only).
        FakeWorker(coord.addr, "http-only", task_types=["http"]) as other,
    ):
        await other.heartbeat_acked()
        async with FakeWorker(first_coord.addr, "w1", capacity=1) as before:
            await insert_tasks(db)
            [kept] = await before.take(1)
        [waiting] = await insert_tasks(db)  # due now; no worker connected offers `internal`
        # The worker moves to the other coordinator (its first one died, say) still running its run.
        again = FakeWorker(coord.addr, "w1", capacity=1, in_flight=[(kept.run_id, kept.attempt)])
        async with again:
            assert again.registered is not None and not again.registered.abandon  # its run was kept
            await again.heartbeat_acked()  # so it registered full
            await again.complete([kept])
            # Before the fix the freed slot was no reason to claim: the timer's knowledge covered
            # only the types of workers that had room when it was set, so the task waited an hour.
            [taken] = await again.take(1, timeout=15)
            assert taken.task_id == str(waiting)


async def test_the_next_firing_of_an_overlap_task_does_not_wait_for_the_poll(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with (
        running_coordinator(database_url, ZEPHYR_POLL_S=HOUR) as coord,
        FakeWorker(coord.addr, "w1") as worker,
    ):
        # Start-up wakes handled (a listener reconnect would make it ask for the next due time).
        await dispatcher_quiet(coord.signals.dispatcher, worker)
        [task_id] = await insert_tasks(
            db, schedule={"every_s": 1, "overlap": True}, recurring=True, overlap=True
        )
        [first] = await worker.take(1)
        # Before the fix the firing a claim rescheduled was told to nobody: the next waited an hour.
        [second] = await worker.take(1, timeout=15)
        assert (first.task_id, second.task_id) == (str(task_id), str(task_id))
        assert second.scheduled_for > first.scheduled_for


class PausingConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection that stops right after locking a task (`lock_task`) until the test lets it go:
    an API transaction caught holding the row while a claim runs."""

    locked: asyncio.Event
    proceed: asyncio.Event

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        row = await super().fetchrow(query, *args, **kwargs)
        if query == QUERIES["lock_task"]:
            self.locked.set()
            await self.proceed.wait()
        return row


async def resume_pending(conn: asyncpg.Connection, task_id: str) -> None:
    await taskstore.resume_task(conn, task_id)  # pending stays pending: commits unchanged


async def retry_pending(conn: asyncpg.Connection, task_id: str) -> None:
    with pytest.raises(Conflict):
        await taskstore.retry_task(conn, task_id)  # only dead tasks: rolls back


@pytest.mark.parametrize("operation", [resume_pending, retry_pending], ids=["resume", "refused-retry"])
async def test_a_due_task_an_api_transaction_held_at_claim_time_is_claimed_when_it_ends(
    database_url: str,
    db: asyncpg.Pool,
    operation: Callable[[asyncpg.Connection, str], Coroutine[Any, Any, None]],
) -> None:
    async with (
        running_coordinator(database_url, ZEPHYR_POLL_S=HOUR) as coord,
        FakeWorker(coord.addr, "w1") as worker,
    ):
        await worker.heartbeat_acked()
        [held] = await insert_tasks(db, next_run_at=datetime.now(UTC) + timedelta(hours=1))
        await db.execute("UPDATE tasks SET next_run_at = now() WHERE id = $1", held)  # due, untold
        conn = await connect(database_url, connection_class=PausingConnection)
        conn.locked, conn.proceed = asyncio.Event(), asyncio.Event()
        try:
            change = asyncio.create_task(operation(conn, str(held)))
            await asyncio.wait_for(conn.locked.wait(), 10)
            [other] = await insert_tasks(db)  # notifies: the claim takes it and skips the held row
            [first] = await worker.take(1)
            assert first.task_id == str(other)
            conn.proceed.set()
            await change
            # Before the fix nothing told the coordinator once the row was free: an hour's wait.
            [second] = await worker.take(1, timeout=15)
            assert second.task_id == str(held)
        finally:
            await conn.close()
