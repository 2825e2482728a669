"""How big each scenario is: the issue's full scale, and `--quick` for smoke runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """Every count, rate and duration the scenarios use; times in seconds."""

    burst_tasks: int = 50_000
    burst_workers: tuple[int, ...] = (1, 2, 4)
    submit_batch: int = 1000  # tasks per POST /v1/tasks/batch (the API's maximum)
    submit_parallel: int = 4  # batch requests in flight at once
    worker_concurrency: int = 100  # ZEPHYR_WORKER_CONCURRENCY for the burst and trickle workers
    # One more burst with 2 workers of this many slots: how much of the burst is slot-bound.
    burst_wide_concurrency: int = 500
    trickle_rate: float = 200.0
    trickle_s: float = 30.0
    spike_tasks: int = 1000
    concurrency_tasks: int = 10_000
    concurrency_workers: int = 2
    sleep_s: float = 5.0
    big_finished: int = 1_000_000
    big_future: int = 1_000_000
    big_workers: int = 2  # burst workers for the big-table rerun (compared with the same count empty)
    recovery_runs: int = 500
    backlog_tasks: int = 1_000_000  # due at once for bench.scenarios.backlog_memory
    backlog_phase_s: float = 40.0  # before and after the outage
    backlog_outage_s: float = 12.0
    submit_quick: bool = False  # bench.submit's own smaller counts
    worker_rss_counts: tuple[int, ...] = (1_000, 10_000)  # runs one worker holds (bench.worker_rss)
    worker_rss_sleep_s: float = 20.0
    peer_tasks_procrastinate: int = 5_000
    peer_tasks_celery: int = 10_000
    peer_rate: float = 50.0
    peer_latency_s: float = 20.0
    scenario_timeout_s: float = 600.0  # bound on any single wait


FULL = Scale()

QUICK = Scale(
    burst_tasks=5_000,
    burst_workers=(1, 2),
    trickle_rate=100.0,
    trickle_s=5.0,
    spike_tasks=200,
    concurrency_tasks=1_000,
    sleep_s=3.0,
    big_finished=50_000,
    big_future=50_000,
    recovery_runs=100,
    backlog_tasks=50_000,
    backlog_phase_s=10.0,
    backlog_outage_s=12.0,
    submit_quick=True,
    worker_rss_counts=(1_000,),
    worker_rss_sleep_s=5.0,
    peer_tasks_procrastinate=1_000,
    peer_tasks_celery=2_000,
    peer_latency_s=4.0,
    scenario_timeout_s=180.0,
)
