"""Log lines: one line per event in text or JSON, carrying the ids of what they are about."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tests.support.protocol_server import assignment
from tests.unit.test_worker_runner import SECRET, drain_until_done, make_runner
from zephyr import logs
from zephyr.v1 import worker_pb2 as pb
from zephyr.worker.outbox import Outbox


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    logs.bind(coordinator_id="coord-1")
    try:
        yield stream, handler
    finally:
        logs.bind(coordinator_id=None)
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_lines_carry_the_process_and_call_fields_and_keep_exceptions_on_their_line(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = captured
    handler.setFormatter(logs.JsonFormatter("coordinator"))
    log = logging.getLogger("zephyr.test")
    log.info("refused ending of run %s", "r-1", extra={"run_id": "r-1", "worker_id": "w-1", "attempt": 2})
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        log.exception("it broke")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "refused ending of run r-1"
    assert (first["coordinator_id"], first["run_id"], first["worker_id"], first["attempt"]) == (
        "coord-1", "r-1", "w-1", 2,
    )  # fmt: skip
    assert first["service"] == "coordinator" and first["level"] == "info"
    assert "task_id" not in first
    assert "ValueError: first\nsecond" in second["exc"]


def test_text_lines_are_one_line_with_key_value_fields(captured: tuple[io.StringIO, logging.Handler]) -> None:
    stream, handler = captured
    handler.setFormatter(logs.TextFormatter())
    log = logging.getLogger("zephyr.test")
    with logs.run_context(run_id="r-2", task_id="t-2"):
        try:
            raise RuntimeError("a\nb")
        except RuntimeError:
            log.exception("run failed")
    [line] = stream.getvalue().splitlines()
    assert "ERROR zephyr.test: run failed coordinator_id=coord-1 task_id=t-2 run_id=r-2 exc=" in line
    assert "RuntimeError: a\\nb" in line


async def test_lines_logged_by_task_code_carry_the_run_ids(
    captured: tuple[io.StringIO, logging.Handler],
) -> None:
    stream, handler = captured
    handler.setFormatter(logs.JsonFormatter("worker"))
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    runner.start(
        assignment("run-a", "internal", json.dumps({"function": "tests.log_line", "args": ["from a"]}))
    )
    runner.start(
        assignment("run-b", "internal", json.dumps({"function": "tests.log_line", "args": ["from b"]}))
    )
    secret_ref = {"$secret": "TOKEN"}
    runner.start(
        assignment("run-s", "internal", json.dumps({"function": "tests.log_line", "args": [secret_ref]}))
    )
    _lines, done = await drain_until_done(outbox, {"run-a", "run-b", "run-s"})
    assert {c.outcome for c in done.values()} == {pb.RUN_OUTCOME_SUCCEEDED}, done
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_message = {e["message"]: e for e in entries if e["logger"] == "tests.sample"}
    assert by_message["from a"]["run_id"] == "run-a" and by_message["from b"]["run_id"] == "run-b"
    assert by_message["from a"]["attempt"] == 1
    assert by_message["from a"]["task_id"] == "task-run-a"
    # Task code logged the run's secret: the line has it masked.
    [secret_line] = [e for e in entries if e.get("run_id") == "run-s" and e["logger"] == "tests.sample"]
    assert SECRET not in stream.getvalue() and "***" in secret_line["message"]
    # Outside a run, no run ids.
    logging.getLogger("zephyr.test").info("after")
    assert "run_id" not in json.loads(stream.getvalue().splitlines()[-1])
