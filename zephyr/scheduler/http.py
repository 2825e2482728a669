"""Request and response helpers shared by the handlers: typed app keys, JSON in and out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from aiohttp import web

from zephyr.config import SchedulerConfig
from zephyr.errors import PayloadTooLarge, ValidationError
from zephyr.scheduler.notifier import DueNotifier
from zephyr.scheduler.schemas import parse_json
from zephyr.stats import OfferedTypes

POOL = web.AppKey("pool", asyncpg.Pool)
# Single inserts (POST /v1/tasks) on connections that keep a generic plan: the statement is one
# VALUES row, with no plan to get wrong, and planning it on every call cost 0.25 of its 0.6 ms.
INSERT_POOL = web.AppKey("insert_pool", asyncpg.Pool)
NOTIFIER = web.AppKey("notifier", DueNotifier)
CONFIG = web.AppKey("config", SchedulerConfig)
# The task types active workers offer, re-read at most every 2 s: the create answers' warnings.
OFFERED_TYPES = web.AppKey("offered_types", OfferedTypes)
# Set when the server begins to shut down: long-lived responses (log follows) end at once.
STOPPING = web.AppKey("stopping", asyncio.Event)


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def respond(data: Any, status: int = 200) -> web.Response:
    """A JSON response. Text that is not valid Unicode (a lone surrogate echoed back in an error
    message) is sent escaped rather than failing the response."""
    try:
        body = dumps(data).encode()
    except UnicodeEncodeError:
        body = json.dumps(data, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, content_type="application/json")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON. A body above ZEPHYR_MAX_BODY_BYTES raises PayloadTooLarge (413),
    anything that is not strict JSON (or could not be stored) raises ValidationError (400)."""
    limit = request.app[CONFIG].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes") from None
    if not body.strip():
        raise ValidationError("the body is empty; send a JSON object")
    return parse_json(body)
