"""Every Prometheus metric Zephyr exports, defined in this one module.

Code records events by calling these objects; nothing else creates metrics. Names follow
Prometheus conventions (`_total` counters, `_seconds` histograms). Label values are bounded
(task type, status, outcome), never ids.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# scheduler
TASKS_SUBMITTED = Counter("zephyr_tasks_submitted_total", "Tasks accepted by the API", ["type"])
HTTP_REQUESTS = Counter("zephyr_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "zephyr_http_request_duration_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS_S
)

# coordinator
RUNS_DISPATCHED = Counter("zephyr_runs_dispatched_total", "Runs assigned to workers", ["type"])
RUNS_FINISHED = Counter("zephyr_runs_finished_total", "Runs ended, by run status", ["type", "status"])
COMPLETIONS_REFUSED = Counter(
    "zephyr_completions_refused_total", "Completions refused by fencing (run no longer the worker's)"
)
TASKS_DEAD = Counter("zephyr_tasks_dead_total", "Tasks dead-lettered", ["type"])
RUNS_LOST = Counter("zephyr_runs_lost_total", "Runs lost because their worker stopped heartbeating")
CLAIMS = Counter("zephyr_claims_total", "Claim statements executed")
CLAIM_BATCH = Histogram(
    "zephyr_claim_batch_size",
    "Runs claimed per claim statement",
    buckets=(0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
CLAIM_LATENCY = Histogram(
    "zephyr_claim_duration_seconds", "Time of one claim transaction", buckets=LATENCY_BUCKETS_S
)
DISPATCH_DELAY = Histogram(
    "zephyr_dispatch_delay_seconds",
    "From due time to started (claimed), first attempts",
    ["type"],
    buckets=LATENCY_BUCKETS_S,
)
RUN_DURATION = Histogram(
    "zephyr_run_duration_seconds", "Run duration as reported by workers", ["type"], buckets=LATENCY_BUCKETS_S
)
WORKERS_CONNECTED = Gauge("zephyr_workers_connected", "Worker streams open on this coordinator")
FREE_SLOTS = Gauge("zephyr_free_slots", "Free run slots reported by connected workers")
RETRIES = Counter("zephyr_task_retries_total", "Failed runs whose task was scheduled to run again", ["type"])
LEASE_EXPIRATIONS = Counter(
    "zephyr_worker_lease_expirations_total", "Workers marked gone because their lease ran out"
)

# Sampled from the database by every coordinator's maintenance (ZEPHYR_STATS_SAMPLE_S): every
# coordinator exports the same cluster-wide figure, so dashboards and alerts take `max by (type)`.
QUEUE_DEPTH = Gauge(
    "zephyr_queue_depth", "Due tasks not yet running, by type (at most the stats cap per sample)", ["type"]
)
OLDEST_DUE_AGE = Gauge(
    "zephyr_oldest_due_age_seconds", "How long the oldest due task of a type has waited", ["type"]
)
TASKS = Gauge("zephyr_tasks", "Tasks by status and type (exact, from the task counters)", ["status", "type"])
PENDING_WITHOUT_WORKER = Gauge(
    "zephyr_pending_without_worker",
    "Pending tasks of a type that no active worker offers (0 for types some worker offers)",
    ["type"],
)
WORKERS = Gauge("zephyr_workers", "Workers known to the database, by status", ["status"])

# worker
WORKER_RUNS_STARTED = Counter("zephyr_worker_runs_started_total", "Runs started by this worker", ["type"])
WORKER_RUNS_FINISHED = Counter(
    "zephyr_worker_runs_finished_total", "Runs finished by this worker", ["type", "outcome"]
)
WORKER_RUNNING = Gauge("zephyr_worker_running", "Runs executing on this worker")
WORKER_RECONNECTS = Counter("zephyr_worker_reconnects_total", "Stream reconnections of this worker")
LOG_LINES_DROPPED = Counter(
    "zephyr_log_lines_dropped_total",
    "Log lines a coordinator dropped, oldest first, while its buffer was full (database slow or away)",
)
WORKER_LOG_LINES_DROPPED = Counter(
    "zephyr_worker_log_lines_dropped_total", "Log lines dropped by the per-run cap"
)


@functools.cache
def child(metric: MetricWrapperBase, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once per label set: `labels()` validates and locks on
    every call, which the hot paths pay per run. Bounded because label values are."""
    return metric.labels(*values)
