"""A real Prometheus (Debian's `prometheus`) scrapes a live cluster under load every second, with
the alert rules of deploy/prometheus; its HTTP API is then asked what the cluster did.

- throughput: the runs PromQL counts over the last minute agree with the API's `runs_per_s`
  (same window; within 2 %, the rounding of a rate to three decimals and a scrape's lag);
- dispatch latency: PromQL's p50 and p99 (`histogram_quantile` over the coordinator's buckets) lie
  in the histogram bucket that holds the same percentile of the runs the API lists
  (`started_at - scheduled_for` of every first attempt): the histogram's own resolution; and the
  p50 and p99 of `/v1/stats/activity` (interpolated between runs) lie in that bucket or the next;
- a shell task that no worker offers fires ZephyrTypeWithoutWorker with `type="shell"` (the rule's
  expression as shipped; its `for` shortened from 1 minute to 2 seconds so the test stays short).
"""

from __future__ import annotations

import asyncio
import math
import subprocess
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.support.cluster import Cluster, free_port, wait_until
from tests.support.host_tools import require_debian_packages
from zephyr.metrics import LATENCY_BUCKETS_S

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "zephyr-rules.yml"
LOAD_TASKS = 1000
WARMUP_TASKS = 10
NOOP = {"type": "internal", "payload": {"function": "zephyr.noop"}}
SCRAPE_EXCERPT = (
    "zephyr_queue_depth",
    "zephyr_pending_without_worker",
    "zephyr_workers{",
    "zephyr_tasks{",
    "zephyr_runs_finished_total",
    'zephyr_dispatch_delay_seconds_bucket{le="0.05"',
    "zephyr_dispatch_delay_seconds_count",
    "zephyr_free_slots",
)
# Printed with the run (pytest -s) for the record: what an operator would ask.
REPORTED_QUERIES = (
    "sum by (status) (zephyr_runs_finished_total)",
    "sum(rate(zephyr_runs_finished_total[30s]))",
    "histogram_quantile(0.5, sum by (le) (rate(zephyr_dispatch_delay_seconds_bucket[1m])))",
    "histogram_quantile(0.99, sum by (le) (rate(zephyr_dispatch_delay_seconds_bucket[1m])))",
    "max by (type) (zephyr_queue_depth)",
    "max by (status) (zephyr_workers)",
)


class Prometheus:
    """A Prometheus server process on a free loopback port with its own storage under tmp."""

    def __init__(self, tmp_path: Path, targets: dict[str, str]) -> None:
        self.dir = tmp_path / "prometheus"
        self.dir.mkdir()
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "ZephyrTypeWithoutWorker":
                    rule["for"] = "2s"
        (self.dir / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yml"],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (self.dir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--query.lookback-delta=30s",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")[-4000:]

    async def query(self, session: aiohttp.ClientSession, promql: str) -> list[dict[str, Any]]:
        async with session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp:
            body = await resp.json()
        assert body["status"] == "success", (promql, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def scalar(self, session: aiohttp.ClientSession, promql: str) -> float | None:
        result = await self.query(session, promql)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    require_debian_packages({"prometheus": "prometheus", "promtool": "prometheus"})
    async with Cluster(database_url, tmp_path) as running:
        yield running


def bucket_index(value: float) -> int:
    """Which histogram bucket `value` falls in (0: up to the first bound)."""
    return next(i for i, upper in enumerate((*LATENCY_BUCKETS_S, math.inf)) if value <= upper)


def percentile_bucket(delays: list[float], q: float) -> tuple[float, float]:
    """The bucket histogram_quantile picks for `q`: the first whose cumulative count reaches q * n."""
    rank = q * len(delays)
    for lower, upper in zip((0.0, *LATENCY_BUCKETS_S), (*LATENCY_BUCKETS_S, math.inf), strict=True):
        if sum(1 for d in delays if d <= upper) >= rank:
            return lower, upper
    raise AssertionError("unreachable")


async def submit_batches(session: aiohttp.ClientSession, api: str, count: int, per_batch: int) -> None:
    """`count` noop tasks in batches of `per_batch`, one batch every 50 ms: a steady load."""
    for start in range(0, count, per_batch):
        tasks = [NOOP] * min(per_batch, count - start)
        async with session.post(f"{api}/v1/tasks/batch", json={"tasks": tasks}) as resp:
            assert resp.status == 201, await resp.text()
        await asyncio.sleep(0.05)


async def first_attempt_delays(session: aiohttp.ClientSession, api: str) -> list[float]:
    """started_at - scheduled_for of every task's first run, as the API reports them."""
    delays: list[float] = []
    cursor = ""
    while True:
        params = {"limit": "1000", "type": "internal", **({"cursor": cursor} if cursor else {})}
        async with session.get(f"{api}/v1/tasks", params=params) as resp:
            page = await resp.json()
        for task in page["tasks"]:
            run = task["last_run"]
            assert run is not None and run["attempt"] == 1, task
            started = datetime.fromisoformat(run["started_at"])
            delays.append((started - datetime.fromisoformat(run["scheduled_for"])).total_seconds())
        cursor = page["next_cursor"]
        if not cursor:
            return delays


async def test_prometheus_agrees_with_the_api_and_fires_the_no_worker_alert(
    cluster: Cluster, tmp_path: Path
) -> None:
    coordinator_metrics = f"127.0.0.1:{free_port()}"
    worker_metrics = f"127.0.0.1:{free_port()}"
    scheduler = await cluster.start_scheduler()
    await cluster.start_coordinator(ZEPHYR_METRICS_ADDR=coordinator_metrics)
    await cluster.start_worker(ZEPHYR_METRICS_ADDR=worker_metrics, ZEPHYR_WORKER_CONCURRENCY="50")
    api = scheduler.addr
    prometheus = Prometheus(
        tmp_path,
        {
            "zephyr-scheduler": api.removeprefix("http://"),
            "zephyr-coordinator": coordinator_metrics,
            "zephyr-worker": worker_metrics,
        },
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"{prometheus.url}/-/ready") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, timeout=30, what="Prometheus ready")
            # No worker offers shell (ZEPHYR_SHELL_ALLOW is unset): the submit says so.
            async with session.post(
                f"{api}/v1/tasks", json={"type": "shell", "payload": {"command": "true"}}
            ) as resp:
                shell_task = await resp.json()
            assert resp.status == 201
            assert [w["code"] for w in shell_task["warnings"]] == ["no_worker_for_type"]

            # Warm-up: every series exists (and is scraped) before the load is counted.
            await submit_batches(session, api, WARMUP_TASKS, WARMUP_TASKS)

            async def scraped(promql: str, at_least: float) -> bool:
                value = await prometheus.scalar(session, promql)
                return value is not None and value >= at_least

            succeeded = 'sum(zephyr_runs_finished_total{status="succeeded"})'
            await wait_until(lambda: scraped(succeeded, WARMUP_TASKS), timeout=30, what="warm-up scraped")

            await submit_batches(session, api, LOAD_TASKS, 20)
            total = WARMUP_TASKS + LOAD_TASKS

            async def all_done() -> bool:
                async with session.get(f"{api}/v1/stats") as resp:
                    stats = await resp.json()
                return bool(stats["tasks"]["succeeded"] == total)

            await wait_until(all_done, timeout=60, what=f"{total} tasks succeeded")
            # Each target is scraped on its own clock: wait for the scheduler's and the
            # coordinator's counters too, not just the worker's.
            await wait_until(lambda: scraped(succeeded, total), timeout=30, what="every run scraped")
            dispatched_sum = "sum(zephyr_runs_dispatched_total)"
            submitted_sum = "sum(zephyr_tasks_submitted_total)"
            await wait_until(lambda: scraped(dispatched_sum, total), timeout=30, what="dispatches scraped")
            await wait_until(lambda: scraped(submitted_sum, total + 1), timeout=30, what="submits scraped")

            # Throughput over the same last minute: the API's runs_per_s against PromQL's.
            async with session.get(f"{api}/v1/stats") as resp:
                stats = await resp.json()
            finished_last_minute = (
                "sum(zephyr_runs_finished_total) - (sum(zephyr_runs_finished_total offset 60s) or vector(0))"
            )
            promql_rate = (await prometheus.scalar(session, finished_last_minute) or 0.0) / 60
            assert stats["runs_per_s"] == pytest.approx(promql_rate, rel=0.02), (stats, promql_rate)
            assert promql_rate * 60 >= LOAD_TASKS
            dispatched = await prometheus.scalar(session, dispatched_sum)
            submitted = await prometheus.scalar(session, submitted_sum)
            assert dispatched == total and submitted == total + 1  # and the shell task

            # Dispatch latency percentiles: PromQL's lie in the bucket holding the same percentile
            # of the runs the API lists, and beside the API's own interpolated percentiles.
            delays = await first_attempt_delays(session, api)
            assert len(delays) == total
            async with session.get(f"{api}/v1/stats/activity", params={"window_s": "300"}) as resp:
                latency = (await resp.json())["dispatch_latency_s"]
            assert latency["runs"] == total
            for q, key in ((0.5, "p50"), (0.99, "p99")):
                promql = f"histogram_quantile({q}, sum by (le) (zephyr_dispatch_delay_seconds_bucket))"
                estimate = await prometheus.scalar(session, promql)
                assert estimate is not None
                lower, upper = percentile_bucket(delays, q)
                assert lower <= estimate <= upper, (q, estimate, lower, upper, sorted(delays)[-20:])
                # percentile_cont interpolates between two runs, which may straddle a bucket bound.
                assert abs(bucket_index(latency[key]) - bucket_index(estimate)) <= 1, (key, latency, estimate)
                print(f"dispatch {key}: PromQL {estimate:.4f} s, API {latency[key]:.4f} s")
            print(f"throughput over the last minute: PromQL {promql_rate:.3f}/s, API {stats['runs_per_s']}/s")
            for promql in REPORTED_QUERIES:
                print(f"{promql} => {await prometheus.query(session, promql)}")
            async with session.get(f"http://{coordinator_metrics}/metrics") as resp:
                scrape = await resp.text()
            print("\n".join(line for line in scrape.splitlines() if line.startswith(SCRAPE_EXCERPT)))
            count = await prometheus.scalar(session, "sum(zephyr_dispatch_delay_seconds_count)")
            assert count == total

            # The shell task waits: the type-without-worker alert fires for shell, and only for it.
            async def firing() -> list[dict[str, Any]]:
                async with session.get(f"{prometheus.url}/api/v1/alerts") as resp:
                    alerts = (await resp.json())["data"]["alerts"]
                return [a for a in alerts if a["state"] == "firing"]

            alerts = await wait_until(firing, timeout=30, what="an alert firing")
            assert [(a["labels"]["alertname"], a["labels"].get("type")) for a in alerts] == [
                ("ZephyrTypeWithoutWorker", "shell")
            ]
            assert alerts[0]["annotations"]["summary"].startswith("1 pending shell tasks")
            pending = await prometheus.scalar(session, 'max(zephyr_pending_without_worker{type="shell"})')
            assert pending == 1
            depth = await prometheus.scalar(session, 'max(zephyr_queue_depth{type="shell"})')
            assert depth == 1
    except BaseException:
        print(prometheus.log())
        print(cluster.dump_logs())
        raise
    finally:
        prometheus.stop()
