"""The coordinator packs a stream's queued messages by bytes as well as by items (issue 13)."""

from __future__ import annotations

from zephyr.coordinator.gateway import Gateway
from zephyr.coordinator.registry import WorkerSession
from zephyr.runoutput import MESSAGE_BUDGET_BYTES
from zephyr.v1 import worker_pb2 as pb


def test_queued_assignments_merge_up_to_the_byte_budget() -> None:
    session = WorkerSession("w1", 100, frozenset({"internal"}))
    payload = '{"function": "zephyr.echo", "kwargs": {"x": "' + "y" * 250_000 + '"}}'
    for i in range(40):
        session.send(pb.CoordinatorMessage(assignments=[pb.Assignment(run_id=f"r{i}", payload_json=payload)]))
    sent = 0
    sizes = []
    while sent < 40:
        first = session.carry.pop() if session.carry else session.outbox.get_nowait()
        assert first is not None
        message = Gateway._merge(first, session)
        sent += len(message.assignments)
        sizes.append(message.ByteSize())
    # Before the fix the forty merged into one 10 MB message (the count limit is 1,000 items).
    assert max(sizes) <= MESSAGE_BUDGET_BYTES
    assert len(sizes) >= 3
