"""Memory stays bounded while the database lags or is away (issue 13): what waits in the
coordinator and the worker has a limit, and the limit holds work back instead of dropping it."""

from __future__ import annotations

import uuid
from typing import cast

import asyncpg

from tests.support.fake_worker import FakeWorker, insert_tasks, running_coordinator
from zephyr.coordinator import logs_sink
from zephyr.coordinator.logs_sink import LogSink
from zephyr.v1 import worker_pb2 as pb


async def test_finished_runs_awaiting_their_commit_hold_back_claims_beyond_capacity(
    database_url: str, db: asyncpg.Pool
) -> None:
    async with (
        running_coordinator(database_url, ZEPHYR_POLL_S="3600") as coord,
        FakeWorker(coord.addr, "w", capacity=1) as worker,
    ):
        await insert_tasks(db, 5)
        signals = coord.signals.dispatcher
        async with db.acquire() as conn, conn.transaction():
            finished = []
            for _ in range(2):
                [run] = await worker.take(1)
                # Its ending cannot commit while this transaction holds its run row.
                await conn.execute("SELECT 1 FROM task_runs WHERE id = $1 FOR UPDATE", uuid.UUID(run.run_id))
                # The dispatcher parked as it pushed this run (same event loop): forget up to there.
                for signal in (signals.claimed, signals.woke, signals.parked):
                    signal.taken()
                await worker.complete([run])
                finished.append(run)
            # The first finished run freed the worker's one slot before its commit; the second
            # frees nothing more. Before the bound every finished run freed a slot: the worker
            # took new work as fast as it finished, however far behind the commits were.
            while await signals.woke.wait() != "changed":
                pass
            await signals.parked.wait()  # the wait after whatever that wake did
            assert not any(signals.claimed.taken())
            assert worker.assignments.empty()
        # Committed (the lock is gone): acked, and the slots they held take the next tasks.
        assert await worker.acked([r.run_id for r in finished]) == {r.run_id: True for r in finished}
        [after] = await worker.take(1, timeout=15)
        assert after.run_id not in {r.run_id for r in finished}


def test_the_coordinators_log_buffer_is_bounded_by_text_as_well_as_lines() -> None:
    sink = LogSink(cast(asyncpg.Pool, None))  # never started: the database is away
    line = "x" * 16 * 1024
    run_id = str(uuid.uuid4())
    for _ in range(2 * logs_sink.MAX_BUFFERED_CHARS // len(line) // 1000):
        sink.add("w", [pb.LogLine(run_id=run_id, line=line) for _ in range(1000)])
    lines, chars = sink.buffered
    # Before the bound 200,000 such lines (3 GiB of text) could wait here.
    assert chars <= logs_sink.MAX_BUFFERED_CHARS
    assert lines == logs_sink.MAX_BUFFERED_CHARS // len(line)
