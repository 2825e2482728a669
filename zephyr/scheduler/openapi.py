"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic request models."""

from __future__ import annotations

from functools import cache
from typing import Any

from zephyr.schedule import CRON_PATTERN
from zephyr.scheduler import params
from zephyr.scheduler.dashboard import is_dashboard_path
from zephyr.scheduler.params import QueryParam
from zephyr.scheduler.schemas import TASK_TYPES, openapi_components, time_zones
from zephyr.scheduler.storable import forbid_nul
from zephyr.taskstore import TASK_STATUSES

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["invalid_schedule"]},
                "message": {"type": "string"},
                "field": {"type": "string", "examples": ["tasks[17].schedule.cron"]},
            },
        }
    },
}

RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "task_id": {"type": "string"},
        "attempt": {"type": "integer"},
        "status": {"enum": ["running", "succeeded", "failed", "timed_out", "lost", "cancelled"]},
        "worker_id": {"type": "string"},
        "scheduled_for": {"type": "string", "format": "date-time"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "result": {},
        "error": {"type": ["object", "null"]},
    },
}

# In the answer to a create only, and only when there is something to say (e.g. no worker offers
# the task's type: it waits until one does).
WARNINGS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "examples": ["no_worker_for_type"]},
            "message": {"type": "string"},
            "field": {"type": "string", "examples": ["type", "tasks[3].type"]},
        },
    },
}

TRACEPARENT_PATTERN = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
# Any value is taken: one that is not a valid W3C traceparent is ignored (a new trace starts) and
# the answer carries an `invalid_traceparent` warning.
TRACEPARENT_HEADER: dict[str, Any] = {
    "name": "traceparent",
    "in": "header",
    "description": "W3C trace context the task keeps; invalid: ignored, with a warning",
    "schema": {"type": "string"},
}

TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "type": {"enum": list(TASK_TYPES)},
        "payload": {"type": "object"},
        "schedule": {"type": ["object", "null"]},
        "status": {"enum": list(TASK_STATUSES)},
        "priority": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "attempts": {"type": "integer"},
        "timeout_s": {"type": "number"},
        "next_run_at": {"type": ["string", "null"], "format": "date-time"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "idempotency_key": {"type": ["string", "null"]},
        "traceparent": {
            "type": ["string", "null"],
            "description": "the W3C trace context the task's runs join (docs/observability.md)",
            "pattern": TRACEPARENT_PATTERN,
        },
        "last_run": {"anyOf": [{"$ref": "#/components/schemas/Run"}, {"type": "null"}]},
        "warnings": WARNINGS_SCHEMA,
    },
}

WORKER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "host": {"type": "string"},
        "capacity": {"type": "integer"},
        "running": {"type": "integer"},
        "status": {"enum": ["active", "draining", "gone"]},
        "task_types": {"type": "array", "items": {"type": "string"}},
        "last_heartbeat_at": {"type": ["string", "null"], "format": "date-time"},
        "free_slots": {"type": "integer"},
        "load": {"type": "number"},
        "coordinator_id": {"type": ["string", "null"]},
        "version": {"type": "string"},
        "registered_at": {"type": ["string", "null"], "format": "date-time"},
    },
}

_RATE = {"type": "number", "minimum": 0}
ACTIVITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["window_s", "submitted_per_s", "finished_per_s", "dispatch_latency_s"],
    "properties": {
        "window_s": {"type": "number"},
        "submitted_per_s": {**_RATE, "description": "tasks created in the window, per second"},
        "finished_per_s": {**_RATE, "description": "runs that ended in the window (any status), per second"},
        "finished": {"type": "object", "additionalProperties": {"type": "integer"}},
        "dispatch_latency_s": {
            "type": "object",
            "description": "due -> started of first attempts started in the window",
            "properties": {
                "runs": {"type": "integer"},
                **{name: {"type": ["number", "null"]} for name in ("p50", "p90", "p99", "max")},
            },
        },
        "approximate": {"type": "array", "items": {"type": "string"}},
        "as_of": {"type": "string", "format": "date-time"},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": "error", **_json(_ref("Error"))} for code in codes}


def _op(summary: str, ok: int, schema: dict[str, Any] | None, *errors: int, **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": summary}
    if schema is not None:
        response.update(_json(schema))
    return {"summary": summary, "responses": {str(ok): response, **_errors(*errors)}, **extra}


def _page_op(summary: str, *media_types: str, not_found: bool = False) -> dict[str, Any]:
    """A dashboard asset: open without a token; `not_found`: 404 for a name the package does not ship."""
    content = {media_type: {"schema": {"type": "string"}} for media_type in media_types}
    return {
        "summary": summary,
        "security": [],
        "responses": {
            "200": {"description": summary, "content": content},
            **(_errors(404) if not_found else {}),
        },
    }


def _with_repeat(operation: dict[str, Any]) -> dict[str, Any]:
    """`operation` that also answers 200 with the first task for a repeated idempotency key."""
    operation["responses"]["200"] = {"description": "the key was seen: the first task", **_json(_ref("Task"))}
    return operation


def _page(item: str, key: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "next_cursor": {"type": ["string", "null"]},
            key: {"type": "array", "items": _ref(item)},
        },
    }


def _query(params: dict[str, QueryParam]) -> list[dict[str, Any]]:
    return [param.openapi() for param in params.values()]


ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
# `/v1/tasks/batch` is a path of its own (POST only), not a task (see tasks.TASK_PATH).
TASK_ID = [{**ID[0], "schema": {"type": "string", "not": {"const": "batch"}}}]
RUN_ID = [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}]
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 240, "pattern": "^[^\\u0000]*$"}
SCHEDULE_FORMS = ("at", "delay_s", "cron", "every_s")
NOT_A_TASK = "the id is `batch`: that path is `POST /v1/tasks/batch` alone (`Allow: POST`)"
# What JSON Schema cannot say of a schedule (it compares no fields and reads no clock): 400 means
# the body breaks this document, 409 that it fits it but cannot be carried out.
UNSCHEDULABLE = (
    "`unschedulable`: the schedule never fires (`end_at` has passed or is before `start_at`, no date "
    "matches the cron, an instant lies outside the years 1 to 9999 in UTC); `conflict` on a batch: "
    "two of its tasks share an idempotency key; on PATCH: the task is running, or the payload is "
    "one of another task type"
)
RECURRING_ONLY = ("start_at", "end_at", "overlap")


def schedule_schema(generated: dict[str, Any]) -> dict[str, Any]:
    """The Schedule model's rules as JSON Schema: exactly one form (`oneOf`), `timezone` only with
    `cron`, `start_at`/`end_at`/`overlap` only with the recurring forms, cron fields within their
    ranges, zones from the IANA database. Other properties may be null (taken as absent)."""

    def value_schema(name: str) -> dict[str, Any]:
        if name == "cron":
            return {"type": "string", "maxLength": 200, "pattern": CRON_PATTERN}
        if name == "timezone":
            return {"type": "string", "enum": sorted(time_zones())}
        variants = generated["properties"][name]["anyOf"]
        return next(v for v in variants if v.get("type") != "null")

    def nullable(name: str) -> dict[str, Any]:
        return {"anyOf": [value_schema(name), {"type": "null"}]}

    null = {"type": "null"}
    forms = []
    for form in SCHEDULE_FORMS:
        properties: dict[str, Any] = {name: null for name in generated["properties"]}
        properties[form] = value_schema(form)
        if form == "cron":
            properties["timezone"] = nullable("timezone")
        if form in ("cron", "every_s"):
            properties.update({name: nullable(name) for name in RECURRING_ONLY})
        forms.append(
            {"type": "object", "required": [form], "properties": properties, "additionalProperties": False}
        )
    return {"description": generated.get("description", ""), "oneOf": forms}


@cache
def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 with JSON Schema 2020-12 components generated from schemas.py."""
    components = openapi_components()
    components["Schedule"] = schedule_schema(components["Schedule"])
    # A new payload must fit the task's own type: one of another type answers 409.
    components["TaskPatch"]["properties"]["payload"] = {
        "anyOf": [*(_ref(f"{t.capitalize()}Payload") for t in TASK_TYPES), {"type": "null"}]
    }
    forbid_nul(components)
    components.update(
        {"Error": ERROR_SCHEMA, "Run": RUN_SCHEMA, "Task": TASK_SCHEMA, "Worker": WORKER_SCHEMA}
    )
    task_create = {
        "oneOf": [_ref(f"{t.capitalize()}Task") for t in TASK_TYPES],
        "discriminator": {"propertyName": "type"},
    }
    action = {"parameters": ID}
    paths: dict[str, Any] = {
        "/v1/tasks": {
            "post": _with_repeat(
                _op(
                    "create a task (200 with the first task on a repeated idempotency key)",
                    201,
                    _ref("Task"),
                    400,
                    401,
                    409,
                    413,
                    503,
                    requestBody={"required": True, **_json(task_create)},
                    parameters=[
                        {"name": "Idempotency-Key", "in": "header", "schema": IDEMPOTENCY_KEY_SCHEMA},
                        TRACEPARENT_HEADER,
                    ],
                )
            ),
            "get": _op(
                "list tasks, newest first",
                200,
                _page("Task", "tasks"),
                400,
                401,
                503,
                parameters=_query(params.TASKS),
            ),
        },
        "/v1/tasks/batch": {
            "post": _op(
                "create up to 1000 tasks in one transaction",
                201,
                {
                    "type": "object",
                    "properties": {
                        "ids": {"type": "array", "items": {"type": "string"}},
                        "warnings": WARNINGS_SCHEMA,
                    },
                },
                400,
                401,
                409,
                413,
                requestBody={"required": True, **_json(_ref("BatchCreate"))},
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "description": "tasks without their own key get `<key>#<index>`",
                        "schema": IDEMPOTENCY_KEY_SCHEMA,
                    },
                    TRACEPARENT_HEADER,
                ],
            )
        },
        "/v1/tasks/{id}": {
            "get": _op("a task with its last run", 200, _ref("Task"), 401, 404, parameters=TASK_ID),
            "patch": _op(
                "change schedule, payload, priority or max_attempts",
                200,
                _ref("Task"),
                400,
                401,
                404,
                409,
                requestBody={"required": True, **_json(_ref("TaskPatch"))},
                parameters=TASK_ID,
            ),
        },
        "/v1/tasks/{id}/cancel": {"post": _op("cancel", 200, _ref("Task"), 401, 404, 409, **action)},
        "/v1/tasks/{id}/retry": {
            "post": _op("retry a dead task", 200, _ref("Task"), 401, 404, 409, **action)
        },
        "/v1/tasks/{id}/pause": {"post": _op("pause", 200, _ref("Task"), 401, 404, 409, **action)},
        "/v1/tasks/{id}/resume": {"post": _op("resume", 200, _ref("Task"), 401, 404, 409, **action)},
        "/v1/tasks/{id}/runs": {
            "get": _op(
                "runs of a task, newest first",
                200,
                _page("Run", "runs"),
                400,
                401,
                404,
                503,
                parameters=ID + _query(params.RUNS),
            )
        },
        "/v1/runs/{run_id}": {"get": _op("a run", 200, _ref("Run"), 401, 404, parameters=RUN_ID)},
        "/v1/runs/{run_id}/logs": {
            "get": _op(
                "log lines of a run, oldest first; `follow=1`: server-sent events until the run ends",
                200,
                {"type": "object", "properties": {"logs": {"type": "array"}, "next_cursor": {}}},
                400,
                401,
                404,
                503,
                parameters=RUN_ID + _query(params.LOGS),
            )
        },
        "/v1/workers": {"get": _op("workers", 200, {"type": "object"}, 401)},
        "/v1/workers/{id}/drain": {
            "post": _op(
                "drain a worker: it finishes its runs and takes no new ones (unknown or gone: 404)",
                200,
                _ref("Worker"),
                401,
                404,
                parameters=ID,
            )
        },
        "/v1/stats": {
            "get": _op("counts by status, queue depth, oldest due age, runs/s", 200, {"type": "object"}, 401)
        },
        "/v1/stats/activity": {
            "get": _op(
                "submitted and finished per second and dispatch latency percentiles over the last window_s seconds",
                200,
                ACTIVITY_SCHEMA,
                400,
                401,
                parameters=[params.ACTIVITY_WINDOW.openapi()],
            )
        },
        "/": {"get": _page_op("the web dashboard", "text/html")},
        "/ui/": {"get": _page_op("the web dashboard", "text/html")},
        "/ui/{name}": {
            "get": {
                **_page_op(
                    "a file of the web dashboard (page, scripts, style sheet)",
                    "text/html",
                    "text/javascript",
                    "text/css",
                    not_found=True,
                ),
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            }
        },
        "/healthz": {"get": _op("process up", 200, {"type": "object"}, security=[])},
        "/readyz": {"get": _op("database reachable", 200, {"type": "object"}, 503, security=[])},
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401),
                },
            }
        },
    }
    for operation in (
        paths["/v1/tasks"]["post"],
        paths["/v1/tasks/batch"]["post"],
        paths["/v1/tasks/{id}"]["patch"],
    ):
        operation["responses"]["409"]["description"] = UNSCHEDULABLE
    for operation in paths["/v1/tasks/{id}"].values():
        operation["responses"]["405"] = {"description": NOT_A_TASK, **_json(_ref("Error"))}
    follow = paths["/v1/runs/{run_id}/logs"]["get"]["responses"]["200"]["content"]
    follow["text/event-stream"] = {"schema": {"type": "string", "description": "with `follow=1`"}}
    for path, operations in paths.items():
        # The rest read the database: 503 while it is down. The dashboard's files never do.
        if path not in ("/healthz", "/metrics") and not is_dashboard_path(path):
            for operation in operations.values():
                operation["responses"].setdefault("503", _errors(503)["503"])
    return {
        "openapi": "3.1.0",
        "info": {"title": "Zephyr scheduler API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
