"""Races around the claim (issue 13): a cancel that commits between the claim and the overlap
reschedule stands; a run never delivered gives its attempt back; a lost firing of an overlap task
runs again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.integration.test_coordinator import runs_of, task_status
from tests.support.cluster import wait_until
from tests.support.fake_worker import FakeWorker, insert_tasks, running_coordinator
from zephyr import ids, taskstore
from zephyr.coordinator.completions import Backoff, CompletionBatcher
from zephyr.coordinator.dispatcher import Dispatcher
from zephyr.coordinator.registry import Registry
from zephyr.db.pool import connect
from zephyr.db.queries import QUERIES
from zephyr.v1 import worker_pb2 as pb

BACKOFF = Backoff(0.05, 0.2)
EVERY_HOUR = {"every_s": 3600, "overlap": True}


async def claim_for(db: asyncpg.Pool, worker_id: str, slots: int = 1) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        QUERIES["claim_due"], ["internal"], [worker_id] * slots, ids.new_ids(slots), "c1", 30.0, None
    )
    return rows


def dispatcher(db: asyncpg.Pool, registry: Registry, batcher: CompletionBatcher) -> Dispatcher:
    return Dispatcher(db, registry, batcher, coordinator_id="c1", poll_s=5.0, grace_s=30.0)


async def test_a_cancel_between_the_claim_and_the_overlap_reschedule_stands(db: asyncpg.Pool) -> None:
    [task_id] = await insert_tasks(db, schedule=EVERY_HOUR, recurring=True, overlap=True)
    rows = await claim_for(db, "w1")
    assert len(rows) == 1
    await taskstore.cancel_task(db, str(task_id))
    async with db.acquire() as conn:
        await Dispatcher._reschedule_overlapping(conn, rows)
    # Before the fix the reschedule put the cancelled task back to pending: it ran forever.
    assert await task_status(db, task_id) == "cancelled"


async def test_runs_never_delivered_give_their_attempt_back(db: asyncpg.Pool) -> None:
    [task_id] = await insert_tasks(db, max_attempts=1)
    batcher = CompletionBatcher(db, BACKOFF)
    batcher.start()
    try:
        rows = await claim_for(db, "vanished")
        # The worker's stream closed between the slot plan and the push: nothing was sent.
        dispatcher(db, Registry(), batcher)._push(rows)
        assert await batcher.drain(10)
    finally:
        await batcher.close()
    task = await taskstore.get_task(db, str(task_id))
    # Before the fix the undelivered run used up the task's only attempt: dead, never run.
    assert (task["status"], task["attempts"]) == ("pending", 0)
    [run] = await runs_of(db, task_id)
    assert (run["status"], run["error"]["code"]) == ("lost", "undelivered")


async def test_a_lost_firing_of_an_overlap_task_runs_again(database_url: str, db: asyncpg.Pool) -> None:
    firing = datetime.now(UTC) - timedelta(seconds=1)
    [task_id] = await insert_tasks(db, schedule=EVERY_HOUR, recurring=True, overlap=True, next_run_at=firing)
    async with running_coordinator(database_url) as coord:
        first = FakeWorker(coord.addr, "w1")
        await first.connect()
        [lost] = await first.take(1)
        # At its claim the task went back to pending at its next firing, an hour on.
        assert await task_status(db, task_id) == "pending"
        first.stop_heartbeats()  # the worker dies with the firing: its lease runs out
        async with FakeWorker(coord.addr, "w2") as second:
            # Before the fix the firing was dropped: the task stayed pending for the next hour.
            [again] = await second.take(1, timeout=15)
            assert again.task_id == str(task_id) and again.run_id != lost.run_id
            await second.complete([again])
            await second.acked([again.run_id])
        await first.close()
    runs = await runs_of(db, task_id)
    assert [r["status"] for r in runs] == ["lost", "succeeded"]
    assert runs[0]["scheduled_for"] == runs[1]["scheduled_for"]
    task = await taskstore.get_task(db, str(task_id))
    next_run_at = datetime.fromisoformat(task["next_run_at"].replace("Z", "+00:00"))
    assert task["status"] == "pending" and next_run_at > datetime.now(UTC) + timedelta(minutes=50)


async def test_a_cancel_never_waits_for_a_run_ending_in_progress(database_url: str, db: asyncpg.Pool) -> None:
    """An ending locks its run, then its task; the cancel API locks the task. Before the fix the
    cancel also locked the task's runs, task first: against an ending in progress that is a
    deadlock (PostgreSQL aborted one of them, the API answered 500)."""
    [task_id] = await insert_tasks(db)
    [row] = await claim_for(db, "w1")
    ending = await connect(database_url)
    try:
        async with ending.transaction():
            # The ending's first statement: the run is locked (and ended) until this commits.
            ended = await ending.fetch(
                QUERIES["finish_runs"], [row["run_id"]], [1], ["w1"], ["failed"], [None], [None]
            )
            assert len(ended) == 1
            # The cancel commits meanwhile: it needs the task only.
            cancelled = await asyncio.wait_for(taskstore.cancel_task(db, str(task_id)), 5)
            assert cancelled["status"] == "cancelled"
            # The ending's second statement finds the task cancelled and leaves it so.
            await ending.execute(
                QUERIES["update_tasks_after_runs"],
                [task_id],
                [row["run_id"]],
                ["running"],
                ["pending"],
                [None],
                [1],
                [False],
            )
    finally:
        await ending.close()
    assert await task_status(db, task_id) == "cancelled"


async def test_a_run_handed_back_unstarted_is_due_again_at_once_without_using_an_attempt(
    database_url: str, db: asyncpg.Pool
) -> None:
    [task_id] = await insert_tasks(db, max_attempts=1)
    async with running_coordinator(database_url) as coord:
        async with FakeWorker(coord.addr, "stopping", heartbeat_s=None) as stopping:
            [first] = await stopping.take(1)
            # The worker is stopping: it takes no more work, and hands back what reaches it.
            await stopping.heartbeat(draining=True)
            await stopping.complete([first], pb.RUN_OUTCOME_CANCELLED, error_code="not_started")
            assert await stopping.acked([first.run_id]) == {first.run_id: True}
        # Before the fix the hand-back counted as the task's only attempt: dead, never run.
        async with FakeWorker(coord.addr, "other") as other:
            [again] = await other.take(1)
            assert (again.task_id, again.attempt) == (str(task_id), 1)


async def test_a_claim_whose_reply_was_lost_is_dispatched_again_within_a_lease(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with (
        running_coordinator(database_url, ZEPHYR_COORDINATOR_ID="c-lost", ZEPHYR_POLL_S="60") as coord,
        FakeWorker(coord.addr, "w1", capacity=1) as worker,
    ):
        await worker.heartbeat_acked()
        # A claim of this coordinator for w1 committed, but its reply never reached the
        # coordinator (a timeout, a dropped connection): nothing was pushed.
        [task_id] = await insert_tasks(db, next_run_at=datetime.now(UTC) + timedelta(hours=1))
        await db.execute("UPDATE tasks SET next_run_at = now() WHERE id = $1", task_id)
        rows = await db.fetch(
            QUERIES["claim_due"], ["internal"], ["w1"], ids.new_ids(1), "c-lost", 30.0, None
        )
        assert len(rows) == 1
        # Before the fix the run stayed running for a worker that never got it until its
        # timeout_s backstop (300 s here); now it is dispatched again within a lease (2 s).
        [again] = await worker.take(1, timeout=15)
        assert again.task_id == str(task_id) and again.run_id != str(rows[0]["run_id"])
        assert again.attempt == 1  # the undelivered claim did not count
        runs = await runs_of(db, task_id)
        assert (runs[0]["status"], runs[0]["error"]["code"]) == ("lost", "undelivered")


async def test_a_due_task_an_api_transaction_held_at_claim_time_does_not_wait_for_the_poll(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with (
        running_coordinator(database_url, ZEPHYR_POLL_S="60") as coord,
        FakeWorker(coord.addr, "w1") as worker,
    ):
        await worker.heartbeat_acked()
        [held] = await insert_tasks(db, next_run_at=datetime.now(UTC) + timedelta(hours=1))
        async with db.acquire() as conn, conn.transaction():
            # An API change (PATCH) holds the row while it comes due and a claim runs.
            await db.execute("UPDATE tasks SET next_run_at = now() WHERE id = $1", held)
            await taskstore.patch_task(
                conn,
                str(held),
                payload=None,
                priority=5,
                max_attempts=None,
                schedule_given=False,
                stored_schedule=None,
                next_run_at=None,
            )
            [other] = await insert_tasks(db)  # notifies: the claim takes it and skips the held row
            [first] = await worker.take(1)
            assert first.task_id == str(other)
        # Before the fix nothing told the coordinator once the row was free: it waited for the
        # fallback poll (60 s here).
        [second] = await worker.take(1, timeout=15)
        assert second.task_id == str(held)


async def take_firing(db: asyncpg.Pool, worker: FakeWorker, task_id: object) -> pb.Assignment:
    """The task's next firing, on `worker`: the firing an hour on is made due now."""
    await db.execute("UPDATE tasks SET next_run_at = now() WHERE id = $1", task_id)
    await db.execute("SELECT pg_notify('zephyr_tasks', '')")
    [firing] = await worker.take(1)
    return firing


@pytest.mark.parametrize("one_worker", [True, False], ids=["one-rescue-batch", "lost-while-another-waits"])
async def test_two_lost_firings_of_an_overlap_task_both_run_again(
    database_url: str, db: asyncpg.Pool, one_worker: bool
) -> None:
    [task_id] = await insert_tasks(db, schedule=EVERY_HOUR, recurring=True, overlap=True)
    async with running_coordinator(database_url) as coord:
        first_worker = FakeWorker(coord.addr, "w1", capacity=2 if one_worker else 1)
        await first_worker.connect()
        [first] = await first_worker.take(1)
        second_worker = first_worker if one_worker else FakeWorker(coord.addr, "w2", capacity=1)
        if not one_worker:
            await second_worker.connect()
        second = await take_firing(db, second_worker, task_id)
        # One worker: both firings are lost with it, in one rescue pass (one batch). Before the fix
        # the batch's two task updates collapsed into one and one firing was dropped.
        first_worker.stop_heartbeats()
        if not one_worker:
            # The first firing's rerun waits (no worker has room); then the second is lost too.
            # Before the fix the second loss took the task's one rerun over.
            await wait_until(lambda: lost_runs(db, task_id, 1), timeout=15, what="first firing lost")
            second_worker.stop_heartbeats()
        await wait_until(lambda: lost_runs(db, task_id, 2), timeout=15, what="both firings lost")
        async with FakeWorker(coord.addr, "heir") as heir:
            again = await heir.take(2, timeout=15)
            assert {a.task_id for a in again} == {str(task_id)}
            assert sorted(a.scheduled_for for a in again) == sorted(
                [first.scheduled_for, second.scheduled_for]
            )


async def lost_runs(db: asyncpg.Pool, task_id: object, count: int) -> bool:
    lost = await db.fetchval("SELECT count(*) FROM task_runs WHERE task_id = $1 AND status = 'lost'", task_id)
    return bool(lost == count)
