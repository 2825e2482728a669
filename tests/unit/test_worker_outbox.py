from __future__ import annotations

import asyncio

from zephyr.runoutput import MAX_RESULT_BYTES, MESSAGE_BUDGET_BYTES
from zephyr.v1 import worker_pb2 as pb
from zephyr.worker.outbox import LINES_PER_MESSAGE, Outbox


def line(run_id: str, text: str = "x") -> pb.LogLine:
    return pb.LogLine(run_id=run_id, line=text, stream=pb.LOG_STREAM_STDOUT)


def done(run_id: str) -> pb.Completion:
    return pb.Completion(run_id=run_id, attempt=1, outcome=pb.RUN_OUTCOME_SUCCEEDED)


async def test_a_completion_waits_for_its_own_lines_but_not_for_other_runs() -> None:
    box = Outbox()
    box.set_connected(True)
    for i in range(LINES_PER_MESSAGE + 5):
        await box.put_line(line("chatty", str(i)))
    box.complete(done("chatty"))
    box.complete(done("quiet"))
    lines, completions = box.take()
    assert len(lines) == LINES_PER_MESSAGE
    assert [c.run_id for c in completions] == ["quiet"]
    lines, completions = box.take()
    assert [x.line for x in lines] == [str(i) for i in range(LINES_PER_MESSAGE, LINES_PER_MESSAGE + 5)]
    assert [c.run_id for c in completions] == ["chatty"]


async def test_unacked_completions_are_sent_again_after_reconnect_until_acked() -> None:
    box = Outbox()
    box.set_connected(True)
    box.complete(done("a"))
    box.complete(done("b"))
    assert [c.run_id for c in box.take()[1]] == ["a", "b"]
    assert box.take()[1] == []
    box.ack("a")
    box.set_connected(False)
    box.set_connected(True)
    assert [c.run_id for c in box.take()[1]] == ["b"]
    assert [r.run_id for r in box.unacked_refs()] == ["b"]
    box.ack("b")
    await asyncio.wait_for(box.wait_all_acked(), 1)


async def test_full_buffer_makes_the_producer_wait_while_connected_and_drops_while_not() -> None:
    box = Outbox(max_lines=2)
    box.set_connected(True)
    assert await box.put_line(line("r"))
    assert await box.put_line(line("r"))
    blocked = asyncio.create_task(box.put_line(line("r", "third")))
    await asyncio.sleep(0)
    assert not blocked.done()
    box.take()
    assert await asyncio.wait_for(blocked, 1) is True
    box.set_connected(False)
    assert await box.put_line(line("r"))
    assert await box.put_line(line("r")) is False


async def test_forget_drops_a_runs_completion_and_lines() -> None:
    box = Outbox()
    box.set_connected(True)
    await box.put_line(line("gone"))
    await box.put_line(line("kept"))
    box.complete(done("gone"))
    box.forget("gone")
    lines, completions = box.take()
    assert [x.run_id for x in lines] == ["kept"]
    assert completions == []
    assert box.unacked_refs() == []


def test_a_message_is_packed_by_bytes_under_the_budget() -> None:
    """Six 1 MiB results never travel in one message: the stream's limit is on bytes, not items."""
    outbox = Outbox()
    outbox.set_connected(True)
    big = '"' + "x" * (MAX_RESULT_BYTES - 2) + '"'
    for i in range(6):
        outbox.complete(pb.Completion(run_id=f"r{i}", attempt=1, result_json=big))
    sizes = []
    sent = 0
    while sent < 6:
        _lines, completions = outbox.take()
        assert completions
        sent += len(completions)
        sizes.append(pb.WorkerMessage(completions=completions).ByteSize())
    assert max(sizes) <= MESSAGE_BUDGET_BYTES
    assert len(sizes) >= 2


async def test_the_line_buffer_is_bounded_by_text_as_well_as_lines() -> None:
    long = "x" * 1000
    box = Outbox(max_lines=1000, max_bytes=3 * len(long))
    box.set_connected(True)
    assert await box.put_line(line("r", long))
    assert await box.put_line(line("r", long))
    blocked = asyncio.create_task(box.put_line(line("r", long)))
    await asyncio.sleep(0)
    # Two lines and their overhead fill three lines' worth of text: the third waits for room.
    assert not blocked.done()
    box.take()
    assert await asyncio.wait_for(blocked, 1) is True
    box.set_connected(False)
    assert await box.put_line(line("r", long))
    assert await box.put_line(line("r", long)) is False  # away: dropped and counted, not kept
