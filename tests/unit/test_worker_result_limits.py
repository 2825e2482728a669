"""The worker fails a run whose result the database would refuse, before sending it (issue 13)."""

from __future__ import annotations

import json

from tests.support.protocol_server import assignment
from tests.unit.test_worker_runner import drain_until_done, make_runner
from zephyr.v1 import worker_pb2 as pb
from zephyr.worker.outbox import Outbox


async def test_the_worker_fails_a_run_whose_result_the_database_would_refuse() -> None:
    outbox = Outbox()
    outbox.set_connected(True)
    runner = make_runner(outbox)
    for kind in ("nan", "inf", "surrogate", "large"):
        payload = {"function": "tests.unstorable", "kwargs": {"kind": kind}}
        runner.start(assignment(kind, "internal", json.dumps(payload)))
    _lines, done = await drain_until_done(outbox, {"nan", "inf", "surrogate", "large"})
    outcomes = {k: (c.outcome, c.error_code, c.retryable, c.result_json) for k, c in done.items()}
    assert outcomes == {
        "nan": (pb.RUN_OUTCOME_FAILED, "invalid_result", False, ""),
        "inf": (pb.RUN_OUTCOME_FAILED, "invalid_result", False, ""),
        # A lone surrogate is replaced, as NUL is: the run keeps the rest of its result.
        "surrogate": (pb.RUN_OUTCOME_SUCCEEDED, "", False, '"a?b"'),
        "large": (pb.RUN_OUTCOME_FAILED, "result_too_large", False, ""),
    }
