"""Traces through real processes: a submit's `traceparent` reaches the task's runs, their log
lines and the `http` request the run makes, and scheduler, coordinator and worker export the
`submit`, `claim`, `dispatch` and `run` spans over OTLP/HTTP to a real receiver the test runs
(tests/support/otlp.py), with OTEL_EXPORTER_OTLP_ENDPOINT pointing at it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.cluster import Cluster, Service, free_port, wait_until
from tests.support.loopback import serve_on_loopback
from tests.support.otlp import ReceivedSpan, Receiver, otlp_receiver

pytestmark = pytest.mark.slow

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
STAGES = ("submit", "claim", "dispatch", "run")


@pytest.fixture
async def target() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A real HTTP server on loopback that records the headers of each request."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({key.lower(): value for key, value in request.headers.items()})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serve_on_loopback(app) as url:
        yield url, seen


async def submit_and_wait(api_url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api_url}/v1/tasks", json=body, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            created: dict[str, Any] = await resp.json()

        async def finished() -> dict[str, Any] | None:
            async with session.get(f"{api_url}/v1/tasks/{created['id']}") as resp:
                task: dict[str, Any] = await resp.json()
            return task if task["status"] not in ("pending", "running") else None

        done: dict[str, Any] = await wait_until(finished, what=f"task {created['id']}")
        return done


async def stages_of(receiver: Receiver, trace_id: str) -> dict[str, ReceivedSpan]:
    """The spans of each stage in `trace_id`, once every stage has arrived."""

    async def all_there() -> dict[str, ReceivedSpan] | None:
        spans = {span.name: span for span in receiver.in_trace(trace_id)}
        return spans if all(stage in spans for stage in STAGES) else None

    found: dict[str, ReceivedSpan] = await wait_until(all_there, what=f"the spans of trace {trace_id}")
    return found


def json_lines(service: Service) -> list[dict[str, Any]]:
    return [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]


async def test_a_traceparent_is_kept_forwarded_logged_and_its_spans_exported(
    database_url: str, tmp_path: Path, target: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = target
    async with otlp_receiver() as receiver:
        otel = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "NO_PROXY": "127.0.0.1,localhost",
            "ZEPHYR_LOG_LEVEL": "DEBUG",
        }
        async with Cluster(database_url, tmp_path, **otel) as cluster:
            scheduler = await cluster.start_scheduler()
            coordinator = await cluster.start_coordinator(ZEPHYR_LOG_FORMAT="json")
            worker = await cluster.start_worker(ZEPHYR_LOG_FORMAT="json")
            http_task = {"type": "http", "payload": {"method": "GET", "url": f"{url}/traced"}}
            task = await submit_and_wait(cluster.api_url, http_task, {"traceparent": TRACEPARENT})
            assert task["status"] == "succeeded", task
            spans = await stages_of(receiver, TRACE_ID)

            # Parentage: caller -> submit -> claim -> dispatch -> run -> the http request.
            submit, claim, dispatch, run = (spans[stage] for stage in STAGES)
            assert submit.parent_id == CALLER_SPAN
            assert claim.parent_id == submit.span_id
            assert dispatch.parent_id == claim.span_id
            assert run.parent_id == dispatch.span_id
            assert [h["traceparent"] for h in seen] == [f"00-{TRACE_ID}-{run.span_id}-01"]
            # The task keeps the submit span's context.
            assert task["traceparent"] == f"00-{TRACE_ID}-{submit.span_id}-01"

            assert (submit.service, claim.service, dispatch.service, run.service) == (
                "zephyr-scheduler",
                "zephyr-coordinator",
                "zephyr-coordinator",
                "zephyr-worker",
            )
            run_id = task["last_run"]["id"]
            for span in (claim, dispatch, run):
                assert span.attributes["zephyr.task.id"] == task["id"]
                assert span.attributes["zephyr.run.id"] == run_id
                assert span.attributes["zephyr.run.attempt"] == 1
                assert span.attributes["zephyr.task.type"] == "http"
                assert span.attributes["zephyr.worker.id"] == worker.addr
            assert submit.attributes["zephyr.task.id"] == task["id"]
            assert run.attributes["zephyr.run.status"] == "succeeded"
            assert dispatch.attributes["zephyr.dispatch.sent"] is True

            # Log lines about the task and its run carry the trace id.
            assert f"task_id={task['id']} trace_id={TRACE_ID}" in scheduler.output()
            for service in (coordinator, worker):
                about_run = [line for line in json_lines(service) if line.get("run_id") == run_id]
                assert about_run, service.output()
                assert all(line.get("trace_id") == TRACE_ID for line in about_run), about_run

            # Without a traceparent the submit span starts the task's trace.
            untraced = await submit_and_wait(cluster.api_url, http_task, {})
            assert untraced["status"] == "succeeded", untraced
            new_trace = untraced["traceparent"][3:35]
            assert new_trace != TRACE_ID
            spans = await stages_of(receiver, new_trace)
            assert spans["submit"].parent_id == ""
            flags = untraced["traceparent"][-2:]  # sampled, and the SDK's trace ids are random
            assert seen[-1]["traceparent"] == f"00-{new_trace}-{spans['run'].span_id}-{flags}"


async def test_without_export_the_context_still_reaches_the_run_and_its_request(
    database_url: str, tmp_path: Path, target: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = target
    async with Cluster(database_url, tmp_path, ZEPHYR_LOG_LEVEL="DEBUG", ZEPHYR_LOG_FORMAT="json") as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        worker = await cluster.start_worker()
        http_task = {"type": "http", "payload": {"method": "GET", "url": f"{url}/plain"}}
        task = await submit_and_wait(cluster.api_url, http_task, {"traceparent": TRACEPARENT})
        assert task["status"] == "succeeded", task
        assert task["traceparent"] == TRACEPARENT
        # The task's trace, the run (a span id of its own, not exported) as the parent.
        sent = seen[-1]["traceparent"]
        assert sent.startswith(f"00-{TRACE_ID}-") and sent.endswith("-01")
        assert sent[36:52] != CALLER_SPAN
        about_run = [line for line in json_lines(worker) if line.get("run_id") == task["last_run"]["id"]]
        assert about_run and all(line.get("trace_id") == TRACE_ID for line in about_run)


async def test_an_unreachable_collector_never_holds_up_a_task(
    database_url: str, tmp_path: Path, target: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = target
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": nobody,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    async with Cluster(database_url, tmp_path, NO_PROXY="127.0.0.1,localhost", **otel) as cluster:
        await cluster.start_scheduler()
        await cluster.start_coordinator()
        await cluster.start_worker()
        http_task = {"type": "http", "payload": {"method": "GET", "url": f"{url}/anyway"}}
        for _ in range(3):
            task = await submit_and_wait(cluster.api_url, http_task, {"traceparent": TRACEPARENT})
            assert task["status"] == "succeeded", task
        assert len(seen) == 3
        assert all(h["traceparent"].startswith(f"00-{TRACE_ID}-") for h in seen)
