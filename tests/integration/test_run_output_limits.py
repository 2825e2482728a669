"""Run output the database would refuse fails its own run and nothing else (issue 13).

PostgreSQL's jsonb refuses NaN, Infinity, `\\u0000` and lone surrogates; a result larger than the
documented cap fails with `result_too_large`. Checked on the worker (before sending), on the
coordinator (a completion as it arrives), and in the batch of endings (split until the refused
ending is alone), with log lines cut and cleaned the same way.
"""

from __future__ import annotations

import json

import asyncpg

from tests.integration.test_coordinator import runs_of, until_status
from tests.support.cluster import wait_until
from tests.support.fake_worker import FakeWorker, insert_tasks, running_coordinator
from zephyr.coordinator.completions import Backoff, CompletionBatcher, RunEnding, apply_endings_splitting
from zephyr.db.queries import QUERIES
from zephyr.runoutput import MAX_LOG_LINE_CHARS, MAX_RESULT_BYTES
from zephyr.v1 import worker_pb2 as pb

BACKOFF = Backoff(0.05, 0.2)


async def test_a_refused_result_fails_its_own_run_and_the_rest_of_the_message_commits(
    database_url: str, db: asyncpg.Pool
) -> None:
    results = {
        "nan": '{"x": NaN}',
        "infinity": "[Infinity]",
        "overflow": "1e400",
        "nul": '"a\\u0000b"',
        "surrogate": '{"k": "\\ud800"}',
        "too_large": json.dumps("x" * MAX_RESULT_BYTES),
        "fine": '{"ok": "\\ud83d\\ude00 1e5"}',
    }
    async with running_coordinator(database_url) as coord, FakeWorker(coord.addr, "w1") as worker:
        task_ids = await insert_tasks(db, len(results))
        assignments = await worker.take(len(results))
        by_task = {a.task_id: a for a in assignments}
        names = dict(zip(results, task_ids, strict=True))
        # One message carries every completion: before the fix, the first refused value made the
        # coordinator retry the whole batch forever and none of them ended.
        await worker._write(
            pb.WorkerMessage(
                completions=[
                    pb.Completion(
                        run_id=by_task[str(names[name])].run_id,
                        attempt=1,
                        outcome=pb.RUN_OUTCOME_SUCCEEDED,
                        result_json=text,
                    )
                    for name, text in results.items()
                ]
            )
        )
        await worker.acked([a.run_id for a in assignments])
        await until_status(db, names["fine"], "succeeded")
        [fine] = await runs_of(db, names["fine"])
        assert fine["result"] == {"ok": "\U0001f600 1e5"}
        for name in results:
            if name == "fine":
                continue
            await until_status(db, names[name], "dead")
            [run] = await runs_of(db, names[name])
            expected = "result_too_large" if name == "too_large" else "invalid_result"
            assert (run["status"], run["error"]["code"], run["result"]) == ("failed", expected, None), name


async def test_a_batch_the_database_refuses_is_split_so_the_other_endings_commit(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with running_coordinator(database_url) as coord, FakeWorker(coord.addr, "w1") as worker:
        task_ids = await insert_tasks(db, 5)
        assignments = await worker.take(5)
        order = {str(t): i for i, t in enumerate(task_ids)}
        assignments.sort(key=lambda a: order[a.task_id])
        # Values that get past the coordinator's own checks only by being built in-process: the
        # database (or the driver) is the one refusing them here.
        bad = {0: float("nan"), 3: {"s": "\ud800"}}
        endings = [
            RunEnding(_uuid(a.run_id), 1, "w1", "succeeded", result=bad.get(i, {"i": i}))
            for i, a in enumerate(assignments)
        ]
        accepted = await apply_endings_splitting(db, endings, BACKOFF)
        assert accepted == [True] * 5
        for i, task_id in enumerate(task_ids):
            [run] = await runs_of(db, task_id)
            if i in bad:
                assert (run["status"], run["error"]["code"]) == ("failed", "invalid_result")
            else:
                assert (run["status"], run["result"]) == ("succeeded", {"i": i})


async def test_log_lines_are_cut_and_cleaned_before_they_are_stored(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with running_coordinator(database_url) as coord, FakeWorker(coord.addr, "w1") as worker:
        await insert_tasks(db)
        [a] = await worker.take(1)
        await worker.log(a.run_id, ["x" * (MAX_LOG_LINE_CHARS * 4), "nul\x00here", "after"])

        async def logged() -> list[asyncpg.Record]:
            rows = list(await db.fetch(QUERIES["list_logs"], _uuid(a.run_id), 0, 10))
            return rows if len(rows) == 3 else []

        rows = await wait_until(logged, what="log lines")
        assert [len(r["line"]) for r in rows] == [MAX_LOG_LINE_CHARS, 8, 5]
        assert rows[1]["line"] == "nul\ufffdhere"


def _uuid(text: str) -> object:
    import uuid

    return uuid.UUID(text)


async def test_endings_resent_while_the_database_is_away_are_queued_once(db: asyncpg.Pool) -> None:
    """A worker reconnecting through an outage resends every unacked completion each time: the
    batcher keeps one entry per ending (before the fix, one per resend: memory grew unbounded)."""
    batcher = CompletionBatcher(db, BACKOFF)  # not started: the database is "away"
    ending = RunEnding(_uuid("0190b5d2-0000-7000-8000-000000000001"), 1, "w1", "succeeded")
    futures = [batcher.submit([ending])[0] for _ in range(100)]
    assert batcher.waiting == 1
    assert all(f is futures[0] for f in futures)
    await batcher.close()
