"""The benchmark's own arithmetic: percentiles, profile summaries, verdicts against the targets."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from bench import report
from bench.disk import FlushProbe
from bench.pacing import paced
from bench.profiling import summarise
from bench.stats import latency_summary, mean_summary, percentile, rate


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_latency_summary_reports_milliseconds() -> None:
    summary = latency_summary([0.003, 0.001, 0.002, 0.010])
    assert summary["count"] == 4
    assert summary["p50_ms"] == 2.0
    assert summary["max_ms"] == 10.0
    assert math.isnan(rate(10, 0.0))


def test_mean_summary_averages_percentiles_sums_counts_and_keeps_the_worst_max() -> None:
    merged = mean_summary([_latency(1.0, 4.0), {**_latency(3.0, 8.0), "max_ms": 50.0}])
    assert merged == {"count": 200.0, "p50_ms": 2.0, "p95_ms": 6.0, "p99_ms": 6.0, "max_ms": 50.0}
    assert math.isnan(mean_summary([])["p50_ms"])


def test_big_table_is_judged_against_its_own_interleaved_empty_runs() -> None:
    """The scenario's empty references decide, not the burst and trickle scenarios of minutes before."""
    trickle = {
        "trickle": {"due_to_started": _latency(1.0, 4.0)},
        "spike": {"due_to_started": _latency(50.0, 90.0)},
    }
    results = {
        "burst": {
            "by_workers": [{"workers": 2, "tasks": 100, "end_to_end_per_s": 20000.0, "processing_per_s": 1.0}]
        },
        "trickle": {
            "rate_per_s": 200.0,
            "trickle": {"due_to_started": _latency(0.5, 1.0), "due_to_finished": _latency(1.0, 2.0)},
        },
        "bigtable": {
            "loaded": {"tasks": 2_000_000},
            "order": ["empty", "big", "big", "empty"],
            "burst": {"workers": 2, "end_to_end_per_s": 9500.0},
            "empty_burst": {"workers": 2, "end_to_end_per_s": 10000.0},
            "trickle": {
                **trickle,
                "disk_stalls": 1,
                "p99_ms_of_each": [3.5, 4.5],
                "disk_p99_ms_of_each": [1.0, 2.0],
            },
            "empty_trickle": {
                "trickle": {"due_to_started": _latency(1.0, 3.0)},
                "disk_stalls": 0,
                "p99_ms_of_each": [2.5, 3.5],
                "disk_p99_ms_of_each": [0.5, 1.5],
            },
        },
    }
    table = {row.metric.strip(): (row.measured, row.verdict) for row in report.rows(results)}
    assert table["big table (2,000,000 tasks): burst 2 workers"] == (
        "9,500/s vs 10,000/s empty, 5.0% worse",
        "PASS",
    )
    assert table["big table trickle due->started p50"] == ("1.0 ms vs 1.0 ms empty, 0.0% better", "PASS")
    assert table["big table trickle due->started p99"] == ("4.0 ms vs 3.0 ms empty, 33.3% worse", "FAIL")
    assert table["big table spike, last started"] == ("90.0 ms", "PASS")
    [spread] = [measured for metric, (measured, _) in table.items() if metric.startswith("interleaved EBBE")]
    assert spread == "E 2.5-3.5 ms (mean 3.0), B 3.5-4.5 ms (mean 4.0)"
    assert table["disk alone during those trickles: flush p99 of each run"] == (
        "E 0.5-1.5 ms (mean 1.0), B 1.0-2.0 ms (mean 1.5)",
        "",
    )
    assert table["disk flushes over 15 ms during those trickles"] == ("E 0, B 1", "")


def test_profile_summary_merges_lines_and_keeps_zephyr_frames_for_inclusive_time() -> None:
    collapsed = "\n".join(
        [
            "main (zephyr/cli/main.py:3);claim (zephyr/coordinator/dispatcher.py:10);execute (asyncpg/c.py:5) 6",
            "main (zephyr/cli/main.py:3);claim (zephyr/coordinator/dispatcher.py:12);dumps (json/__init__.py:1) 2",
            "main (zephyr/cli/main.py:3);push (zephyr/coordinator/dispatcher.py:40) 2",
        ]
    )
    summary = summarise(collapsed, seconds=1.0)
    assert summary["samples"] == 10
    assert summary["self"][0] == {"frame": "execute (asyncpg/c.py)", "pct": 60.0}
    inclusive = {entry["frame"]: entry["pct"] for entry in summary["inclusive_zephyr"]}
    assert inclusive == {
        "claim (zephyr/coordinator/dispatcher.py)": 80.0,
        "push (zephyr/coordinator/dispatcher.py)": 20.0,
    }


def _latency(p50: float, p99: float) -> dict[str, float]:
    return {"count": 100.0, "p50_ms": p50, "p95_ms": p99, "p99_ms": p99, "max_ms": p99}


def test_verdicts_against_the_issue_targets() -> None:
    results = {
        "burst": {
            "by_workers": [
                {"workers": 1, "tasks": 100, "end_to_end_per_s": 4000.0, "processing_per_s": 4100.0},
                {"workers": 2, "tasks": 100, "end_to_end_per_s": 6000.0, "processing_per_s": 6100.0},
            ],
            # The wide configuration counts for the best burst too, named by its slots.
            "wide": {
                "workers": 2,
                "worker_concurrency": 500,
                "tasks": 100,
                "end_to_end_per_s": 6500.0,
                "processing_per_s": 6600.0,
            },
        },
        "peers": {"celery": {"processing_per_s": 500.0}, "procrastinate": {"processing_per_s": 500.0}},
        "trickle": {
            "rate_per_s": 200.0,
            "trickle": {"due_to_started": _latency(3.0, 20.0), "due_to_finished": _latency(5.0, 30.0)},
        },
        "bigtable": {
            "loaded": {"tasks": 2_000_000},
            "burst": {"workers": 2, "end_to_end_per_s": 5000.0},
            "trickle": {"trickle": {"due_to_started": _latency(3.1, 20.0)}},
        },
        "recovery": {"runs": 500, "recovery_s": 10.5, "target_s": 11},
    }
    verdicts = {row.metric.strip(): row.verdict for row in report.rows(results)}
    assert verdicts["burst end to end, best (2 workers x 500 slots)"] == "PASS"
    assert verdicts["ratio Zephyr burst / celery"] == "PASS"  # 13x >= 10x
    assert verdicts["ratio Zephyr burst / procrastinate"] == "FAIL"  # 13x < 15x
    assert verdicts["trickle 200/s due->started p50"] == "PASS"
    assert verdicts["p99"] == "FAIL"
    # The big-table burst is compared with the empty-table burst of the same worker count: -16.7%.
    assert verdicts["big table (2,000,000 tasks): burst 2 workers"] == "FAIL"
    measured = {row.metric.strip(): row.measured for row in report.rows(results)}
    assert measured["big table (2,000,000 tasks): burst 2 workers"] == "5,000/s vs 6,000/s empty, 16.7% worse"
    # A lower latency is the better one: 3.1 ms against 3.0 ms is worse, and within 10%.
    assert measured["big table trickle due->started p50"] == "3.1 ms vs 3.0 ms empty, 3.3% worse"
    assert verdicts["big table trickle due->started p50"] == "PASS"
    assert verdicts["recovery: 500 runs after kill -9"] == "PASS"


async def test_paced_keeps_order_and_bounds_requests_in_flight() -> None:
    in_flight = peak = 0
    release = asyncio.Event()

    async def submit(index: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if index == 0:
            await release.wait()  # the first request hangs until the gate is full
        else:
            release.set()
            await asyncio.sleep(0)
        in_flight -= 1
        return index

    assert await paced(1_000_000.0, 20, submit, max_in_flight=3) == list(range(20))
    assert peak <= 3


def test_flush_probe_times_real_flushes_and_leaves_no_file(tmp_path: Path) -> None:
    with FlushProbe(tmp_path, interval_s=0.01) as probe:
        time.sleep(0.3)
    summary = probe.summary()
    assert summary["count"] >= 5 and summary["count"] == len(probe.latencies_s)
    assert 0 < summary["p50_ms"] <= summary["max_ms"]
    assert summary["stalls"] == sum(s * 1000 > summary["stall_ms"] for s in probe.latencies_s)
    assert list(tmp_path.iterdir()) == []
    rows = {row.metric.strip(): row.measured for row in report.rows({"trickle": _trickle_with(summary)})}
    assert any(metric.startswith("disk flushes over 15 ms") for metric in rows)


def _trickle_with(disk: dict[str, object]) -> dict[str, object]:
    return {
        "rate_per_s": 200.0,
        "trickle": {"due_to_started": _latency(1.0, 5.0), "due_to_finished": _latency(2.0, 6.0)},
        "disk_flush": disk,
    }


def test_a_time_is_during_a_stall_within_its_margin(tmp_path: Path) -> None:
    probe = FlushProbe(tmp_path)
    probe.stall_windows = [(100.0, 100.2)]
    assert probe.during_stall(100.1) and probe.during_stall(99.99) and probe.during_stall(100.21)
    assert not probe.during_stall(99.9) and not probe.during_stall(100.3)
    results = {
        "trickle": {
            **_trickle_with({**_disk(stalls=1)}),
            "trickle_apart_from_disk_stalls": {"due_to_started": _latency(1.0, 4.0)},
        }
    }
    measured = {row.metric.strip(): row.measured for row in report.rows(results)}
    assert measured["without the tasks due during those stalls: p50 / p99 / max (diagnostic)"].startswith(
        "1.0 /"
    )


def _disk(stalls: int) -> dict[str, object]:
    return {
        "interval_s": 0.05, "count": 100.0, "p50_ms": 0.3, "p95_ms": 1.0, "p99_ms": 20.0, "max_ms": 200.0,
        "stall_ms": 15.0, "stalls": stalls, "stalled_ms_total": 200.0,
    }  # fmt: skip
