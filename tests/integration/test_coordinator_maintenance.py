"""Maintenance `run_once()` jobs and the claim against a real PostgreSQL, without a server:
the dispatcher claims for an in-memory registry, the jobs end runs, the tests read the rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.support.cluster import wait_until
from tests.support.fake_worker import insert_tasks
from zephyr import stats as cluster_stats
from zephyr import taskstore
from zephyr.coordinator.completions import Backoff, CompletionBatcher, RunEnding, apply_endings
from zephyr.coordinator.dispatcher import Dispatcher
from zephyr.coordinator.maintenance import Maintenance
from zephyr.coordinator.registry import Registry, WorkerSession
from zephyr.db.pool import create_pool
from zephyr.db.queries import QUERIES
from zephyr.ids import new_id

BACKOFF = Backoff(0.001, 0.001)


async def register(
    db: asyncpg.Pool, worker_id: str, *, capacity: int = 10, lease_s: float = 60
) -> WorkerSession:
    await db.execute(
        QUERIES["upsert_worker"],
        worker_id,
        "host",
        1,
        "test",
        capacity,
        ["internal"],
        "c-test",
        lease_s,
        new_id(),
    )
    return WorkerSession(worker_id, capacity, frozenset({"internal"}))


async def claim(db: asyncpg.Pool, *sessions: WorkerSession, grace_s: float = 60) -> list[str]:
    registry = Registry()
    for session in sessions:
        registry.add(session)
    batcher = CompletionBatcher(db, BACKOFF)
    dispatcher = Dispatcher(db, registry, batcher, coordinator_id="c-test", poll_s=5, grace_s=grace_s)
    claimed, more = await dispatcher.claim_once()
    while more:  # claims start small and grow while they come back full, as the dispatch loop does
        again, more = await dispatcher.claim_once()
        claimed += again
    assert claimed == sum(len(s.outstanding) for s in sessions)
    return [run_id for s in sessions for run_id in s.outstanding]


async def status_counts(db: asyncpg.Pool) -> dict[str, int]:
    return {r["status"]: r["runs"] for r in await db.fetch(QUERIES["run_status_counts"])}


async def test_claim_spreads_over_workers_and_never_twice(db: asyncpg.Pool) -> None:
    await insert_tasks(db, 30)
    a = await register(db, "a", capacity=10)
    b = await register(db, "b", capacity=5)
    first = await claim(db, a, b)
    assert (len(a.outstanding), len(b.outstanding)) == (10, 5)
    c = await register(db, "c", capacity=100)
    second = await claim(db, c)
    assert len(second) == 15 and not set(first) & set(second)
    assert await claim(db, await register(db, "d")) == []
    assert await status_counts(db) == {"running": 30}


async def test_concurrent_claims_skip_locked_rows(db: asyncpg.Pool) -> None:
    await insert_tasks(db, 200)
    sessions = [await register(db, f"w{i}", capacity=40) for i in range(8)]
    results = await asyncio.gather(*(claim(db, s) for s in sessions))
    claimed = [run for runs in results for run in runs]
    assert len(claimed) == 200 and len(set(claimed)) == 200
    tasks = await db.fetch(QUERIES["run_status_counts"])
    assert [(r["status"], r["runs"], r["tasks"]) for r in tasks] == [("running", 200, 200)]


async def test_rescue_loses_runs_of_expired_workers_once_across_coordinators(db: asyncpg.Pool) -> None:
    await insert_tasks(db, 20, max_attempts=1)
    silent = await register(db, "silent", capacity=20, lease_s=0.001)
    await claim(db, silent)
    alive = await register(db, "alive")
    jobs = [Maintenance(db, BACKOFF, lease_s=2, retention_s=3600) for _ in range(3)]
    ended = await asyncio.gather(*(job.rescue_once() for job in jobs))
    assert sum(ended) == 20
    assert await status_counts(db) == {"lost": 20}
    stats = await cluster_stats.stats(db, max_age_s=0)
    assert stats["tasks"]["dead"] == 20  # max_attempts=1: lost is the last attempt
    workers = {w["id"]: w["status"] for w in await taskstore.list_workers(db)}
    assert workers == {"silent": "gone", "alive": "active"}
    assert alive.free == 10


async def test_timeout_backstop_ends_overdue_runs(db: asyncpg.Pool) -> None:
    [task_id] = await insert_tasks(db, timeout_s=0.001, max_attempts=2)
    worker = await register(db, "w")
    [run_id] = await claim(db, worker, grace_s=0)
    maintenance = Maintenance(db, BACKOFF, lease_s=2, retention_s=3600)
    assert await maintenance.timeouts_once() == 1
    run = await taskstore.get_run(db, run_id)
    assert run["status"] == "timed_out" and run["error"]["code"] == "timeout"
    task = await taskstore.get_task(db, str(task_id))
    assert (task["status"], task["attempts"]) == ("pending", 1)
    assert await maintenance.timeouts_once() == 0


async def test_retention_deletes_old_runs_but_keeps_the_latest(db: asyncpg.Pool) -> None:
    [task_id] = await insert_tasks(db, max_attempts=3)
    worker = await register(db, "w")
    [first] = await claim(db, worker)
    await apply_endings(db, [RunEnding(_uuid(first), 1, "w", "failed")], BACKOFF)
    worker.outstanding.clear()

    assert (await taskstore.get_task(db, str(task_id)))["status"] == "pending"

    async def claimed_again() -> list[str]:
        return await claim(db, worker)  # empty until the 1 ms backoff has passed

    [second] = await wait_until(claimed_again, what="retry claimed")
    await apply_endings(db, [RunEnding(_uuid(second), 2, "w", "succeeded")], BACKOFF)
    maintenance = Maintenance(db, BACKOFF, lease_s=2, retention_s=0)
    assert await maintenance.retention_once() == 1
    task = await taskstore.get_task(db, str(task_id))
    assert task["status"] == "succeeded" and task["last_run"]["id"] == second


async def test_stale_and_repeated_endings_are_refused(db: asyncpg.Pool) -> None:
    await insert_tasks(db)
    worker = await register(db, "w")
    [run_id] = await claim(db, worker)
    rid = _uuid(run_id)
    results = await apply_endings(
        db,
        [
            RunEnding(rid, 2, "w", "succeeded"),  # wrong attempt
            RunEnding(rid, 1, "other", "succeeded"),  # wrong worker
            RunEnding(rid, 1, "w", "succeeded"),
            RunEnding(rid, 1, "w", "succeeded"),  # duplicate in the same batch
        ],
        BACKOFF,
    )
    assert results == [False, False, True, False]
    assert await apply_endings(db, [RunEnding(rid, 1, "w", "failed")], BACKOFF) == [False]
    assert await status_counts(db) == {"succeeded": 1}


def _uuid(text: str) -> object:
    import uuid

    return uuid.UUID(text)


async def test_runs_sent_down_a_stream_the_worker_left_are_lost(db: asyncpg.Pool) -> None:
    await insert_tasks(db, 2)
    here = await register(db, "mover", capacity=1)
    [before] = await claim(db, here)
    # the worker registers on another coordinator (its registration reconciles `before`) ...
    await db.execute(
        QUERIES["upsert_worker"], "mover", "host", 1, "test", 1, ["internal"], "c-other", 60, new_id()
    )
    # ... while this coordinator still holds its old stream and claims once more for it
    here.outstanding.clear()
    [after] = await claim(db, here)
    maintenance = Maintenance(db, BACKOFF, lease_s=2, retention_s=3600, coordinator_id="c-test")
    assert await maintenance.misrouted_once() == 1
    assert (await taskstore.get_run(db, after))["status"] == "lost"
    assert (await taskstore.get_run(db, before))["status"] == "running"
    other = Maintenance(db, BACKOFF, lease_s=2, retention_s=3600, coordinator_id="c-other")
    assert await other.misrouted_once() == 0


async def test_a_batch_of_successes_ends_one_off_and_recurring_runs_each_the_right_way(
    db: asyncpg.Pool,
) -> None:
    """One-off successes take the one-statement path; recurring ones and stale endings in the
    same batch fall back to the transaction that decides their task's next state."""
    [one_off, cancelled] = await insert_tasks(db, 2)
    [recurring] = await insert_tasks(db, schedule={"every_s": 60}, recurring=True)
    worker = await register(db, "w")
    runs = await claim(db, worker)
    run_of = {
        str((await db.fetchrow("SELECT task_id FROM task_runs WHERE id = $1", _uuid(r)))["task_id"]): r
        for r in runs
    }
    await taskstore.cancel_task(db, str(cancelled))
    endings = [RunEnding(_uuid(run_of[str(t)]), 1, "w", "succeeded") for t in (one_off, cancelled, recurring)]
    results = await apply_endings(
        db, [*endings, RunEnding(_uuid(run_of[str(one_off)]), 2, "w", "succeeded")], BACKOFF
    )
    assert results == [True, True, True, False]
    tasks = {t: await taskstore.get_task(db, str(t)) for t in (one_off, cancelled, recurring)}
    assert tasks[one_off]["status"] == "succeeded"
    assert tasks[cancelled]["status"] == "cancelled"  # its run ended; a cancel is never overwritten
    assert tasks[recurring]["status"] == "pending"  # its next firing, decided in Python
    assert await status_counts(db) == {"succeeded": 3}


async def test_a_due_time_notified_while_the_timer_query_runs_is_kept(database_url: str) -> None:
    """The query for the next due time saw no task; a notification for one arrived meanwhile."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        registry = Registry()
        registry.add(WorkerSession("w", 10, frozenset({"internal"})))
        dispatcher = Dispatcher(
            pool, registry, CompletionBatcher(pool, BACKOFF), coordinator_id="c", poll_s=30, grace_s=60
        )
        held = await pool.acquire()  # the timer's query waits for the only connection
        timer = asyncio.create_task(dispatcher._set_timer())
        await asyncio.sleep(0)
        due = datetime.now(UTC) + timedelta(seconds=5)
        dispatcher.on_tasks_notify(due.isoformat().replace("+00:00", "Z"))
        notified_at = dispatcher._timer_at
        await pool.release(held)
        await timer  # next_due: no task in the table, so None
        assert notified_at is not None and dispatcher._timer_at == notified_at
    finally:
        await pool.close()
