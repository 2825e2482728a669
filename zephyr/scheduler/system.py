"""Handlers of the operational endpoints: health, readiness, metrics, OpenAPI, workers, stats."""

from __future__ import annotations

import logging

import prometheus_client
from aiohttp import web

from zephyr import taskstore
from zephyr.db.queries import QUERIES
from zephyr.scheduler.http import POOL, respond
from zephyr.scheduler.openapi import openapi_document

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0

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
        log.warning("readiness check failed: %s", exc)
        return respond({"status": "unavailable", "error": {"code": "unavailable", "message": str(exc)}}, 503)
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
    """Counts are at most a second old (see taskstore.stats)."""
    return respond(await taskstore.stats(request.app[POOL]))
