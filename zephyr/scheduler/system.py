"""Handlers of the operational endpoints: health, readiness, metrics, OpenAPI, workers, stats."""

from __future__ import annotations

import logging

import prometheus_client
from aiohttp import web

from zephyr import stats as cluster_stats
from zephyr import taskstore
from zephyr.db.queries import QUERIES
from zephyr.errors import NotFound
from zephyr.scheduler import params
from zephyr.scheduler.http import POOL, respond
from zephyr.scheduler.openapi import openapi_document

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0
WORKER_ID_MAX_CHARS = 255

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 while the process serves requests."""
    return respond({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers within 2 s, else 503."""
    try:
        await request.app[POOL].fetchval(QUERIES["ping"], timeout=READY_TIMEOUT_S)
    except Exception as exc:  # any failure (refused, timeout, SQL error) means not ready
        # The cause (host, user, database) goes to the log only: /readyz answers without a token.
        log.warning("readiness check failed: %s", exc)
        error = {"code": "unavailable", "message": "the database is not reachable"}
        return respond({"status": "unavailable", "error": error}, 503)
    return respond({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this process's metrics."""
    body = prometheus_client.generate_latest()
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return respond(openapi_document())


@routes.get("/v1/workers")
async def workers(request: web.Request) -> web.Response:
    return respond({"workers": await taskstore.list_workers(request.app[POOL])})


@routes.get("/v1/stats")
async def stats(request: web.Request) -> web.Response:
    """Figures at most a second old (see zephyr.stats.stats)."""
    return respond(await cluster_stats.stats(request.app[POOL]))


def _storable_id(text: str) -> bool:
    """Text PostgreSQL could hold as a worker id (no NUL, no lone surrogate, bounded)."""
    if len(text) > WORKER_ID_MAX_CHARS or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@routes.post("/v1/workers/{id}/drain")
async def drain_worker(request: web.Request) -> web.Response:
    """The worker finishes its runs and takes no new ones; 200 with the worker (`draining`),
    404 for an unknown or gone worker."""
    worker_id = request.match_info["id"]
    if not _storable_id(worker_id):
        raise NotFound("no such worker")  # could never have registered: no database round trip
    return respond(await taskstore.drain_worker(request.app[POOL], worker_id))


@routes.get("/v1/stats/activity")
async def activity(request: web.Request) -> web.Response:
    """Submitted and finished per second and dispatch latency over the last `window_s` seconds (1 to
    3600, default 60); at most a second old (see zephyr.stats.activity)."""
    window = params.ACTIVITY_WINDOW.read(request)
    return respond(await cluster_stats.activity(request.app[POOL], float(window)))
