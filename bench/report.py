"""The results of one run: the table against the issue's targets, the JSON file and the PNG."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET_BURST_PER_S = 5_000
STRETCH_BURST_PER_S = 10_000
TARGET_RATIO_CELERY = 10.0
TARGET_RATIO_PROCRASTINATE = 15.0
TARGET_P50_MS = 5.0
TARGET_P99_MS = 15.0
TARGET_SPIKE_MS = 1_000.0
TARGET_WORKER_RSS_MB = 200.0
TARGET_BIG_TABLE_DRIFT = 0.10


@dataclass(frozen=True)
class Row:
    metric: str
    target: str
    measured: str
    verdict: str  # PASS, FAIL or "" when there is no target


def _get(data: dict[str, Any], *path: str | int) -> Any:
    node: Any = data
    for key in path:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _num(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


ALL_PERCENTILES = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
SHORT_PERCENTILES = ("p50_ms", "p99_ms", "max_ms")


def _ms(summary: dict[str, Any], keys: tuple[str, ...]) -> str:
    """Latencies of a summary as `a / b / c ms`, one decimal."""
    return " / ".join(_num(summary[k], "", 1) for k in keys) + " ms"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "FAIL")


def best_burst(results: dict[str, Any]) -> dict[str, Any] | None:
    """The fastest end-to-end burst of every configuration run (1, 2, 4 workers, and the wide one)."""
    runs = [*(_get(results, "burst", "by_workers") or []), *filter(None, [_get(results, "burst", "wide")])]
    return max(runs, key=lambda r: r["end_to_end_per_s"], default=None)


def burst_with(results: dict[str, Any], workers: int) -> dict[str, Any] | None:
    runs = _get(results, "burst", "by_workers") or []
    return next((r for r in runs if r["workers"] == workers), None)


def ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return float(a) / float(b)


def drift(new: Any, old: Any) -> float | None:
    """Relative change of `new` against `old` (0.05 = 5% more)."""
    value = ratio(new, old)
    return None if value is None else value - 1.0


def _against_empty(new_text: str, old_text: str, change: float | None, higher_is_better: bool) -> str:
    """'<new> vs <old> empty, N% better|worse': the big-table figure beside the one it is judged by."""
    if change is None:
        return f"{new_text} vs {old_text} empty"
    better = change >= 0 if higher_is_better else change <= 0
    return f"{new_text} vs {old_text} empty, {abs(100 * change):.1f}% {'better' if better else 'worse'}"


def _spread(trickles: dict[str, Any], key: str = "p99_ms_of_each") -> str:
    """'a-b ms (mean m)': the lowest, highest and mean of one figure of repeated trickle runs."""
    values = trickles.get(key) or []
    if not values:
        return "?"
    return f"{min(values):.1f}-{max(values):.1f} ms (mean {sum(values) / len(values):.1f})"


def _disk_rows(disk: dict[str, Any] | None, indent: str) -> list[Row]:
    """What the flush probe saw beside a latency phase (bench/disk.py)."""
    if not disk:
        return []
    return [
        Row(
            f"{indent}disk alone meanwhile: 8 KB fdatasync every {disk['interval_s'] * 1000:.0f} ms,"
            " p50 / p99 / max",
            "",
            _ms(disk, SHORT_PERCENTILES),
            "",
        ),
        Row(
            f"{indent}disk flushes over {disk['stall_ms']:.0f} ms (each holds every commit in flight)",
            "",
            f"{disk['stalls']} of {disk['count']:.0f}, {disk['stalled_ms_total']:.0f} ms in all",
            "",
        ),
    ]


def rows(results: dict[str, Any]) -> list[Row]:
    """The table: each figure with the issue's target and whether it is met."""
    sections = (
        _burst_rows,
        _submit_rows,
        _peer_processing_rows,
        _trickle_rows,
        _spike_rows,
        _peer_rate_rows,
        _roundtrip_rows,
        _concurrency_rows,
        _worker_rss_rows,
        _big_table_rows,
        _recovery_rows,
    )
    return [row for section in sections for row in section(results)]


def _burst_rows(results: dict[str, Any]) -> list[Row]:
    """The best burst against its targets, then each configuration's burst."""
    out: list[Row] = []
    best = best_burst(results)
    best_rate: float | None = best["end_to_end_per_s"] if best else None
    if best is not None and best_rate is not None:
        out.append(
            Row(
                f"burst end to end, best ({best['workers']} workers x {best.get('worker_concurrency', '?')} slots)",
                f">= {TARGET_BURST_PER_S:,}/s",
                _num(best_rate, "/s"),
                _verdict(best_rate >= TARGET_BURST_PER_S),
            )
        )
        out.append(
            Row(
                "  stretch",
                f">= {STRETCH_BURST_PER_S:,}/s",
                _num(best_rate, "/s"),
                _verdict(best_rate >= STRETCH_BURST_PER_S),
            )
        )
    for run in _get(results, "burst", "by_workers") or []:
        out.append(
            Row(
                f"  burst {run['tasks']:,} with {run['workers']} worker(s)",
                "",
                f"{_num(run['end_to_end_per_s'], '/s')} e2e, {_num(run['processing_per_s'], '/s')} processing",
                "",
            )
        )
    wide = _get(results, "burst", "wide")
    if wide:
        out.append(
            Row(
                f"  burst {wide['tasks']:,} with {wide['workers']} workers x {wide['worker_concurrency']} slots",
                "",
                f"{_num(wide['end_to_end_per_s'], '/s')} e2e, {_num(wide['processing_per_s'], '/s')} processing",
                "",
            )
        )
    return out


def _submit_rows(results: dict[str, Any]) -> list[Row]:
    """Submission alone, and the one-worker drain of the backlog it queued."""
    out: list[Row] = []
    for mode, label in (
        ("single_sequential", "submit alone: POST /v1/tasks, 1 client"),
        ("single_concurrent", "submit alone: POST /v1/tasks, 32 clients"),
        ("batch_1000", "submit alone: batches of 1000, 1 at a time"),
        ("batch_1000_parallel_4", "submit alone: batches of 1000, 4 at a time"),
    ):
        figure = _get(results, "submit", mode, "tasks_per_s")
        if figure is not None:
            out.append(Row(label, "", _num(figure, "/s"), ""))
    submit = _get(results, "burst", "submit_only")
    if submit:
        out.append(
            Row(
                "submit alone before the drain (batches of 1000, 4 at a time)",
                "",
                _num(submit["submit_per_s"], "/s"),
                "",
            )
        )
        out.append(
            Row(
                "processing, 1 worker draining a queued backlog",
                "",
                _num(submit["drain_processing_per_s"], "/s"),
                "",
            )
        )
    return out


def _peer_processing_rows(results: dict[str, Any]) -> list[Row]:
    """Each peer's processing rate, and Zephyr's best burst and one-worker drain against it."""
    out: list[Row] = []
    best = best_burst(results)
    best_rate: float | None = best["end_to_end_per_s"] if best else None
    submit = _get(results, "burst", "submit_only")
    for peer, target in (("celery", TARGET_RATIO_CELERY), ("procrastinate", TARGET_RATIO_PROCRASTINATE)):
        peer_rate = _get(results, "peers", peer, "processing_per_s")
        if peer_rate is None:
            continue
        out.append(Row(f"{peer} processing", "", _num(peer_rate, "/s"), ""))
        value = ratio(best_rate, peer_rate)
        out.append(
            Row(
                f"  ratio Zephyr burst / {peer}",
                f">= {target:.0f}x",
                _num(value, "x", 1),
                _verdict(None if value is None else value >= target),
            )
        )
        drain = ratio(_get(submit or {}, "drain_processing_per_s"), peer_rate)
        out.append(Row(f"  ratio Zephyr 1-worker processing / {peer}", "", _num(drain, "x", 1), ""))
    return out


def _trickle_rows(results: dict[str, Any]) -> list[Row]:
    """The steady trickle's due->started percentiles against their targets, with what explains them."""
    trickle = _get(results, "trickle", "trickle", "due_to_started")
    if not trickle:
        return []
    rate = _get(results, "trickle", "rate_per_s")
    out = [
        Row(
            f"trickle {rate:.0f}/s due->started p50",
            f"<= {TARGET_P50_MS:.0f} ms",
            _num(trickle["p50_ms"], " ms", 1),
            _verdict(trickle["p50_ms"] <= TARGET_P50_MS),
        ),
        Row("  p95", "", _num(trickle["p95_ms"], " ms", 1), ""),
        Row(
            "  p99",
            f"<= {TARGET_P99_MS:.0f} ms",
            _num(trickle["p99_ms"], " ms", 1),
            _verdict(trickle["p99_ms"] <= TARGET_P99_MS),
        ),
        Row("  max", "", _num(trickle["max_ms"], " ms", 1), ""),
    ]
    apart = _get(results, "trickle", "trickle_apart_from_spike", "due_to_started")
    if apart:
        out.append(
            Row(
                "  without the spike's 2 s: p50 / p95 / p99 / max",
                "",
                _ms(apart, ALL_PERCENTILES),
                "",
            )
        )
    during = _get(results, "trickle", "checkpoints_during")
    if during is not None:
        out.append(Row("  checkpoints during the trickle (one is forced just before)", "", str(during), ""))
    out.extend(_disk_rows(_get(results, "trickle", "disk_flush"), "  "))
    calm = _get(results, "trickle", "trickle_apart_from_disk_stalls", "due_to_started")
    if calm and _get(results, "trickle", "disk_flush", "stalls"):
        out.append(
            Row(
                "  without the tasks due during those stalls: p50 / p99 / max (diagnostic)",
                "",
                _ms(calm, SHORT_PERCENTILES) + f", {calm['count']:,.0f} tasks",
                "",
            )
        )
    fin = _get(results, "trickle", "trickle", "due_to_finished")
    out.append(
        Row(
            "  due->finished p50 / p95 / p99 / max",
            "",
            _ms(fin, ALL_PERCENTILES),
            "",
        )
    )
    return out


def _spike_rows(results: dict[str, Any]) -> list[Row]:
    """The spike's last start against its target, and its percentiles."""
    spike = _get(results, "trickle", "spike")
    if not spike:
        return []
    late = spike["due_to_started"]["max_ms"]
    return [
        Row(
            f"spike: {spike['tasks']:,} due in one second, last started",
            f"<= {TARGET_SPIKE_MS:.0f} ms",
            _num(late, " ms", 1),
            _verdict(late <= TARGET_SPIKE_MS),
        ),
        Row(
            "  spike due->started p50 / p99",
            "",
            f"{_num(spike['due_to_started']['p50_ms'], '', 1)} / {_num(spike['due_to_started']['p99_ms'], '', 1)} ms",
            "",
        ),
    ]


def _peer_rate_rows(results: dict[str, Any]) -> list[Row]:
    """Zephyr's and each peer's due->started latency at the peers' rate, and their ratios."""
    out: list[Row] = []
    slow = _get(results, "trickle", "at_peer_rate", "due_to_started")
    peer_rate = (
        _get(results, "trickle", "at_peer_rate", "rate_per_s")
        or _get(results, "peers", "celery", "latency_rate_per_s")
        or _get(results, "peers", "procrastinate", "latency_rate_per_s")
    )
    if slow or peer_rate:
        out.append(Row(f"due->started p50 / p99 at {peer_rate or 0:.0f}/s", "", "", ""))
    if slow:
        out.append(
            Row("  Zephyr", "", f"{_num(slow['p50_ms'], '', 2)} / {_num(slow['p99_ms'], '', 2)} ms", "")
        )
        out.extend(_disk_rows(_get(results, "trickle", "at_peer_rate", "disk_flush"), "    "))
    for peer in ("procrastinate", "celery"):
        lat = _get(results, "peers", peer, "due_to_started")
        if lat:
            out.append(
                Row(f"  {peer}", "", f"{_num(lat['p50_ms'], '', 2)} / {_num(lat['p99_ms'], '', 2)} ms", "")
            )
            if slow:
                out.append(
                    Row(
                        f"    ratio {peer} / Zephyr (p50, p99)",
                        "",
                        f"{_num(ratio(lat['p50_ms'], slow['p50_ms']), 'x', 1)}, "
                        f"{_num(ratio(lat['p99_ms'], slow['p99_ms']), 'x', 1)}",
                        "",
                    )
                )
    return out


def _roundtrip_rows(results: dict[str, Any]) -> list[Row]:
    trip = _get(results, "roundtrip", "post_to_succeeded_s")
    if not trip:
        return []
    return [
        Row(
            f"round trip POST -> reads succeeded, {_get(results, 'roundtrip', 'tasks')} http tasks: p50 / p99 / max",
            "",
            _ms(trip, SHORT_PERCENTILES),
            "",
        )
    ]


def _concurrency_rows(results: dict[str, Any]) -> list[Row]:
    """Runs in flight at once against their count, and the processes' peak RSS."""
    conc = results.get("concurrency")
    if not conc:
        return []
    worst = conc["max_worker_rss_mb"]
    return [
        Row(
            f"in flight at once ({conc['tasks']:,} sleeps, {conc['workers']} workers)",
            f"{conc['tasks']:,}",
            _num(conc["peak_in_flight"]),
            _verdict(conc["peak_in_flight"] >= conc["tasks"]),
        ),
        Row(
            "  peak RSS per worker",
            f"<= {TARGET_WORKER_RSS_MB:.0f} MB",
            ", ".join(_num(v, " MB") for k, v in conc["rss_mb_peak"].items() if k != "coordinator"),
            _verdict(worst <= TARGET_WORKER_RSS_MB),
        ),
        Row("  peak RSS coordinator", "", _num(conc["rss_mb_peak"]["coordinator"], " MB"), ""),
    ]


def _worker_rss_rows(results: dict[str, Any]) -> list[Row]:
    return [
        Row(
            f"one worker alone holding {one['runs']:,} sleeps (stub gateway)",
            f"<= {TARGET_WORKER_RSS_MB:.0f} MB",
            f"{_num(one['held_rss_mb'], ' MB')} ({one['held_running']:,} running)",
            _verdict(one["held_rss_mb"] <= TARGET_WORKER_RSS_MB and one["held_running"] >= one["runs"]),
        )
        for one in _get(results, "worker_rss", "results") or []
    ]


def _big_table_rows(results: dict[str, Any]) -> list[Row]:
    """The big table's burst, trickle and spike, each judged against the empty table's."""
    big = results.get("bigtable")
    if not big:
        return []
    # Runs since the interleaved references carry their own empty side; older ones compare
    # with the burst and trickle scenarios of the same run.
    empty = big.get("empty_burst") or burst_with(results, big["burst"]["workers"])
    empty_trickle = big.get("empty_trickle") or results.get("trickle") or {}
    empty_rate = _get(empty or {}, "end_to_end_per_s")
    change = drift(big["burst"]["end_to_end_per_s"], empty_rate)
    out = [
        Row(
            f"big table ({big['loaded']['tasks']:,} tasks): burst {big['burst']['workers']} workers",
            "<= 10% worse",
            _against_empty(
                _num(big["burst"]["end_to_end_per_s"], "/s"), _num(empty_rate, "/s"), change, True
            ),
            _verdict(None if change is None else change >= -TARGET_BIG_TABLE_DRIFT),
        )
    ]
    for key in ("p50_ms", "p99_ms"):
        new = _get(big, "trickle", "trickle", "due_to_started", key)
        old = _get(empty_trickle, "trickle", "due_to_started", key)
        change = drift(new, old)
        out.append(
            Row(
                f"  big table trickle due->started {key[:3]}",
                "<= 10% worse",
                _against_empty(_num(new, " ms", 1), _num(old, " ms", 1), change, False),
                _verdict(None if change is None else change <= TARGET_BIG_TABLE_DRIFT),
            )
        )
    spike_max = _get(big, "trickle", "spike", "due_to_started", "max_ms")
    out.append(
        Row(
            "  big table spike, last started",
            f"<= {TARGET_SPIKE_MS:.0f} ms",
            _num(spike_max, " ms", 1),
            _verdict(None if spike_max is None else spike_max <= TARGET_SPIKE_MS),
        )
    )
    out.extend(_stats_rows(big))
    if "order" in big:
        out.extend(_interleaved_rows(big))
    return out


def _stats_rows(big: dict[str, Any]) -> list[Row]:
    """What one uncached stats read costs on the big table, quiet and right after the bursts."""
    rows = []
    for when, label in (("quiet", "after loading"), ("after_bursts", "after the bursts")):
        timing = _get(big, "stats", when)
        if timing:
            rows.append(
                Row(
                    f"  big table stats read {label}: p50 / p99 (first call, folding the count log)",
                    "a few ms",
                    f"{_num(timing['p50_ms'], ' ms', 1)} / {_num(timing['p99_ms'], ' ms', 1)}"
                    f" ({_num(timing['first_ms'], ' ms', 1)})",
                    "",
                )
            )
    return rows


def _interleaved_rows(big: dict[str, Any]) -> list[Row]:
    """The spread of the interleaved empty and big runs' trickle and disk figures."""
    empty_side, big_side = big["empty_trickle"], big["trickle"]
    return [
        Row(
            f"  interleaved {''.join(side[0].upper() for side in big['order'])} (E empty, B big):"
            " trickle p99 of each run",
            "",
            f"E {_spread(empty_side)}, B {_spread(big_side)}",
            "",
        ),
        Row(
            "  disk alone during those trickles: flush p99 of each run",
            "",
            f"E {_spread(empty_side, 'disk_p99_ms_of_each')}, B {_spread(big_side, 'disk_p99_ms_of_each')}",
            "",
        ),
        Row(
            f"  disk flushes over {TARGET_P99_MS:.0f} ms during those trickles",
            "",
            f"E {empty_side['disk_stalls']}, B {big_side['disk_stalls']}",
            "",
        ),
    ]


def _recovery_rows(results: dict[str, Any]) -> list[Row]:
    rec = results.get("recovery")
    if not rec:
        return []
    return [
        Row(
            f"recovery: {rec['runs']} runs after kill -9",
            f"<= {rec['target_s']} s",
            _num(rec["recovery_s"], " s", 2),
            _verdict(rec["recovery_s"] <= rec["target_s"]),
        )
    ]


def render(table: list[Row]) -> str:
    header = Row("metric", "target", "measured", "")
    widths = [max(len(getattr(r, f)) for r in [header, *table]) for f in ("metric", "target", "measured")]
    lines = []
    for r in [header, *table]:
        lines.append(
            f"{r.metric:<{widths[0]}}  {r.target:<{widths[1]}}  {r.measured:<{widths[2]}}  {r.verdict}".rstrip()
        )
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, default=str, allow_nan=True) + "\n")


def plot(results: dict[str, Any], path: Path) -> bool:
    """Throughput against workers and latency percentiles, side by side; False if nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs = _get(results, "burst", "by_workers") or []
    series = _latency_series(results)
    if not runs and not series:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    workers = [r["workers"] for r in runs] or [1, 2, 4]
    if runs:
        left.plot(
            workers, [r["end_to_end_per_s"] for r in runs], "o-", label="Zephyr end to end (submit included)"
        )
        left.plot(workers, [r["processing_per_s"] for r in runs], "s--", label="Zephyr processing")
        left.set_title(f"Burst of {runs[0]['tasks']:,} no-op tasks")
    else:
        left.set_title("Burst (Zephyr not measured in this run)")
    left.axhline(TARGET_BURST_PER_S, color="grey", linestyle=":", label=f"target {TARGET_BURST_PER_S:,}/s")
    for peer, colour in (("celery", "tab:green"), ("procrastinate", "tab:red")):
        peer_rate = _get(results, "peers", peer, "processing_per_s")
        if peer_rate:
            left.axhline(
                peer_rate, color=colour, linestyle="-.", label=f"{peer}, 1 worker x10: {peer_rate:,.0f}/s"
            )
    wide = _get(results, "burst", "wide")
    if wide:
        left.plot(
            [wide["workers"]],
            [wide["end_to_end_per_s"]],
            "^",
            color="tab:purple",
            label=f"Zephyr end to end, {wide['worker_concurrency']} slots per worker",
        )
    big = _get(results, "bigtable", "burst")
    if big:
        left.plot(
            [big["workers"]],
            [big["end_to_end_per_s"]],
            "D",
            color="black",
            label="Zephyr end to end, big table",
        )
    left.set_xticks(workers)
    left.set_xlabel("workers")
    left.set_ylabel("tasks per second")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    if series:
        keys = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
        width = 0.8 / len(series)
        for index, (label, summary) in enumerate(series):
            xs = [k + index * width for k in range(len(keys))]
            right.bar(xs, [max(summary[k], 0.01) for k in keys], width, label=label)
        right.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))], [k[:-3] for k in keys])
        right.set_yscale("log")
        right.yaxis.set_major_locator(
            matplotlib.ticker.FixedLocator([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000])
        )
        right.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        right.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        right.axhline(TARGET_P99_MS, color="grey", linestyle=":", label=f"p99 target {TARGET_P99_MS:.0f} ms")
        right.set_ylabel("due -> started, ms (log)")
        right.set_title("Latency percentiles")
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _latency_series(results: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    candidates = [
        (
            f"Zephyr {_get(results, 'trickle', 'rate_per_s') or 0:.0f}/s",
            _get(results, "trickle", "trickle", "due_to_started"),
        ),
        (
            f"Zephyr {_get(results, 'trickle', 'rate_per_s') or 0:.0f}/s, spike's 2 s left out",
            _get(results, "trickle", "trickle_apart_from_spike", "due_to_started"),
        ),
        ("Zephyr spike", _get(results, "trickle", "spike", "due_to_started")),
        ("Zephyr big table", _get(results, "bigtable", "trickle", "trickle", "due_to_started")),
        (
            f"Zephyr {_get(results, 'trickle', 'at_peer_rate', 'rate_per_s') or 0:.0f}/s",
            _get(results, "trickle", "at_peer_rate", "due_to_started"),
        ),
        (
            f"procrastinate {_get(results, 'peers', 'procrastinate', 'latency_rate_per_s') or 0:.0f}/s",
            _get(results, "peers", "procrastinate", "due_to_started"),
        ),
        (
            f"celery {_get(results, 'peers', 'celery', 'latency_rate_per_s') or 0:.0f}/s",
            _get(results, "peers", "celery", "due_to_started"),
        ),
    ]
    return [(label, summary) for label, summary in candidates if summary and summary.get("count")]


def render_profile(profile: dict[str, Any], top: int = 8) -> str:
    """The top frames of each profiled process, as text."""
    lines = [
        f"profile: burst of {profile['tasks']:,} with {profile['workers']} workers, {profile['seconds']:.1f}s"
    ]
    cpu = profile.get("cpu")
    if cpu:
        busy = ", ".join(f"{name} {share:.2f}" for name, share in cpu["cores_busy"].items())
        lines.append(f"  cores busy during an unprofiled burst of {cpu['wall_s']:.1f}s: {busy}")
    claims = profile.get("claims")
    if claims:
        lines.append(
            f"  claims in that burst: {claims.get('claims', 0):.0f} statements, "
            f"{claims.get('runs_per_claim')} runs and {claims.get('ms_per_claim')} ms each"
        )
    for name, summary in profile["processes"].items():
        if "error" in summary:
            lines.append(f"  {name}: {summary['error']}")
            continue
        lines.append(f"  {name}: {summary['samples']} busy samples, ~{summary['busy_core_share']} of a core")
        for kind in ("self", "inclusive_zephyr"):
            lines.append(f"    {kind}:")
            lines.extend(f"      {entry['pct']:5.1f}%  {entry['frame']}" for entry in summary[kind][:top])
    return "\n".join(lines)
