"""Handlers of runs and their logs, including `?follow=1` server-sent events."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from aiohttp import web

from zephyr import taskstore
from zephyr.errors import NotFound
from zephyr.scheduler import cursors, params
from zephyr.scheduler.http import POOL, STOPPING, dumps, respond

routes = web.RouteTableDef()

# A follower re-reads the run's new lines this often while the run runs. There is no NOTIFY per
# log line (that would cost the coordinator a round trip per batch); one indexed read per
# follower every 250 ms is cheap.
FOLLOW_POLL_S = 0.25
FOLLOW_PAGE = 500
KEEPALIVE_S = 15.0


@routes.get("/v1/tasks/{id}/runs")
async def list_runs(request: web.Request) -> web.Response:
    """Runs of a task, newest first; 404 for an unknown task."""
    taskstore.parse_id(request.match_info["id"])  # a malformed id is a 404 before any 400
    limit, cursor = (param.read(request) for param in params.RUNS.values())
    before = cursors.decode_uuid("r", cursor)
    runs = await taskstore.list_runs(
        request.app[POOL], request.match_info["id"], before=before, limit=limit + 1
    )
    page, next_cursor = cursors.page("r", runs, limit, lambda run: run["id"])
    return respond({"runs": page, "next_cursor": next_cursor})


@routes.get("/v1/runs/{run_id}")
async def get_run(request: web.Request) -> web.Response:
    return respond(await taskstore.get_run(request.app[POOL], request.match_info["run_id"]))


@routes.get("/v1/runs/{run_id}/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    """Lines oldest first after `cursor`; `next_cursor` continues (null when no more lines now).
    With `follow=1`: server-sent events (`log` events whose `id` is a cursor, so Last-Event-ID
    resumes), the lines so far first, then new ones, and a final `end` event with the run's
    status once the run has ended and every line is out."""
    pool = request.app[POOL]
    run_id = taskstore.parse_id(request.match_info["run_id"], "run")
    limit, cursor, follow = (param.read(request) for param in params.LOGS.values())
    after = cursors.decode_int("l", cursor or request.headers.get("Last-Event-ID") or None)
    if await taskstore.run_status(pool, run_id) is None:
        raise NotFound(f"no run {request.match_info['run_id']!r}")
    if follow in params.FOLLOW_ON:
        return await _follow(request, pool, run_id, after)
    lines = await taskstore.list_logs(pool, run_id, after=after, limit=limit + 1)
    page, next_cursor = cursors.page("l", lines, limit, lambda line: line[0])
    return respond({"logs": [line for _, line in page], "next_cursor": next_cursor})


async def _follow(request: web.Request, pool: asyncpg.Pool, run_id: Any, after: int) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    stopping = request.app[STOPPING]
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    try:
        while not stopping.is_set():
            # Status first, lines second: lines written before the run ended are then all visible.
            status = await taskstore.run_status(pool, run_id)
            rows = await taskstore.list_logs(pool, run_id, after=after, limit=FOLLOW_PAGE)
            if rows:
                after = rows[-1][0]
                chunk = "".join(
                    f"id: {cursors.encode('l', key)}\nevent: log\ndata: {dumps(line)}\n\n"
                    for key, line in rows
                )
                await response.write(chunk.encode())  # one write per page, not per line
                last_write = loop.time()
            if len(rows) == FOLLOW_PAGE:
                continue
            if status != "running":
                await response.write(f"event: end\ndata: {dumps({'status': status})}\n\n".encode())
                break
            if loop.time() - last_write > KEEPALIVE_S:
                await response.write(b": keep-alive\n\n")
                last_write = loop.time()
            # Sleep, but wake at once when the server shuts down (the client resumes elsewhere
            # with Last-Event-ID).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), FOLLOW_POLL_S)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    return response
