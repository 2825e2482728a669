"""The `traceparent` header of a submit is kept with its tasks (span export off: as sent)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.api_server import Api, running_api

TASK = {"type": "internal", "payload": {"function": "zephyr.noop"}}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_api(database_url) as api:
        yield api


def codes(body: dict[str, object]) -> list[object]:
    warnings = body.get("warnings") or []
    assert isinstance(warnings, list)
    return [w["code"] for w in warnings]


async def test_a_task_keeps_the_traceparent_it_was_submitted_with(api: Api) -> None:
    status, task = await api.call("POST", "/v1/tasks", json=TASK, headers={"traceparent": TRACEPARENT})
    assert status == 201, task
    assert task["traceparent"] == TRACEPARENT
    assert "invalid_traceparent" not in codes(task)
    status, read = await api.call("GET", f"/v1/tasks/{task['id']}")
    assert (status, read["traceparent"]) == (200, TRACEPARENT)


async def test_a_later_version_is_kept_as_version_00(api: Api) -> None:
    header = "cc" + TRACEPARENT[2:] + "-more"
    status, task = await api.call("POST", "/v1/tasks", json=TASK, headers={"traceparent": header})
    assert (status, task["traceparent"]) == (201, TRACEPARENT)


async def test_without_a_header_a_task_has_no_trace_context(api: Api) -> None:
    status, task = await api.call("POST", "/v1/tasks", json=TASK)
    assert (status, task["traceparent"]) == (201, None)
    assert "invalid_traceparent" not in codes(task)


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": TRACEPARENT.upper()},
        {"traceparent": "ff" + TRACEPARENT[2:]},
        {"traceparent": TRACEPARENT + "-x"},
        {"traceparent": "x" * 600},
        [("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)],
    ],
)
async def test_an_invalid_header_is_ignored_with_a_warning_naming_it(
    api: Api, headers: dict[str, str] | list[tuple[str, str]]
) -> None:
    status, task = await api.call("POST", "/v1/tasks", json=TASK, headers=headers)
    assert status == 201, task
    assert task["traceparent"] is None
    warning = next(w for w in task["warnings"] if w["code"] == "invalid_traceparent")
    assert warning["field"] == "traceparent"


async def test_a_batch_shares_its_header(api: Api) -> None:
    status, body = await api.call(
        "POST", "/v1/tasks/batch", json={"tasks": [TASK, TASK, TASK]}, headers={"traceparent": TRACEPARENT}
    )
    assert status == 201, body
    assert "invalid_traceparent" not in codes(body)
    for task_id in body["ids"]:
        assert (await api.call("GET", f"/v1/tasks/{task_id}"))[1]["traceparent"] == TRACEPARENT
    status, body = await api.call(
        "POST", "/v1/tasks/batch", json={"tasks": [TASK]}, headers={"traceparent": "00-zz"}
    )
    assert status == 201 and "invalid_traceparent" in codes(body)
    assert (await api.call("GET", f"/v1/tasks/{body['ids'][0]}"))[1]["traceparent"] is None


async def test_the_database_refuses_a_malformed_traceparent(api: Api) -> None:
    _status, task = await api.call("POST", "/v1/tasks", json=TASK)
    with pytest.raises(asyncpg.CheckViolationError, match="tasks_traceparent_w3c"):
        await api.pool.execute("UPDATE tasks SET traceparent = 'nope' WHERE id = $1::uuid", task["id"])
