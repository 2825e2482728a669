"""`python -m bench [--quick] [--only a,b] [--skip a,b] [--database-url DSN]`: run the benchmarks.

Starts one PostgreSQL server (embedded in a temporary directory unless `ZEPHYR_DATABASE_URL` or
`--database-url` names one), runs the chosen scenarios one after another, each on its own database
and its own services, and writes `bench/results/bench-<time>.json` (also `latest.json`) and
`bench/results/bench.png`. A scenario that fails is reported and the others still run; the exit
status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.database import BenchServer, default_database_url, durable
from bench.scale import FULL, QUICK, Scale

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = (
    "peers",
    "submit",
    "burst",
    "trickle",
    "roundtrip",
    "concurrency",
    "worker_rss",
    "recovery",
    "backlog_memory",
    "bigtable",
    "profile",
)

Runner = Callable[[BenchServer, Scale, Path], Awaitable[Any]]


def _runner(name: str) -> Runner:
    runner: Runner = importlib.import_module(f"bench.scenarios.{name}").run
    return runner


def _brief(result: Any) -> str:
    """A few headline numbers of a scenario's result, for the progress lines."""
    if not isinstance(result, dict):
        return str(result)
    if "error" in result:
        return f"ERROR {result['error']}"
    keys = ("processing_per_s", "end_to_end_per_s", "recovery_s", "peak_in_flight")
    found = [f"{k}={result[k]:.1f}" for k in keys if isinstance(result.get(k), (int, float))]
    parts = {
        k: v for k, v in result.items() if isinstance(v, dict) and ("error" in v or "processing_per_s" in v)
    }
    found += [f"{name}: {_brief(part)}" for name, part in parts.items()]
    return ", ".join(found) or "done"


def _say(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of every scenario")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    parser.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    parser.add_argument(
        "--database-url", default=default_database_url(), help="existing server (default: embedded)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON and PNG go")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    skipped = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = (set(chosen) | skipped) - set(SCENARIOS)
    if unknown:
        parser.error(
            f"--only/--skip: unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}"
        )
    args.scenarios = [s for s in SCENARIOS if s in chosen and s not in skipped]
    return args


async def run(args: argparse.Namespace) -> int:
    scale = QUICK if args.quick else FULL
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    log_dir = Path(tempfile.mkdtemp(prefix=f"zephyr-bench-logs-{stamp}-"))
    server = BenchServer(args.database_url)
    began = time.perf_counter()
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    _say(
        f"scenarios: {', '.join(args.scenarios)} ({'quick' if args.quick else 'full'} scale); logs in {log_dir}"
    )
    await asyncio.to_thread(server.start)
    try:
        settings = await server.settings()
        if not durable(settings):
            _say(f"WARNING: the server is not durable ({settings}): figures are not comparable")
        results["meta"] = {
            "started_at": datetime.now(UTC).isoformat(),
            "scale": "quick" if args.quick else "full",
            "scale_values": {k: getattr(scale, k) for k in scale.__dataclass_fields__},
            "commit": _git_commit(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(),
            "postgres": {"kind": server.kind, **settings, "durable": durable(settings)},
            "log_dir": str(log_dir),
        }
        for name in args.scenarios:
            _say(f"{name} ...")
            t0 = time.perf_counter()
            (log_dir / name).mkdir(parents=True, exist_ok=True)
            try:
                results[name] = await _runner(name)(server, scale, log_dir / name)
                errors.update(
                    {
                        f"{name}.{part}": value["error"]
                        for part, value in results[name].items()
                        if isinstance(value, dict) and "error" in value
                    }
                )
                _say(f"{name} done in {time.perf_counter() - t0:.0f}s: {_brief(results[name])}")
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                _say(f"{name} FAILED after {time.perf_counter() - t0:.0f}s: {errors[name][:2000]}")
                traceback.print_exc()
    finally:
        await asyncio.to_thread(server.stop)
    results["errors"] = errors
    results["meta"]["seconds"] = time.perf_counter() - began
    results["meta"]["load_avg_at_end"] = os.getloadavg()

    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"bench-{stamp}.json"
    report.write_json(results, json_path)
    report.write_json(results, args.out / "latest.json")
    png_path = args.out / "bench.png"
    drawn = report.plot(results, png_path)
    print()
    print(report.render(report.rows(results)))
    if "profile" in results:
        print()
        print(report.render_profile(results["profile"]))
    print()
    _say(
        f"results: {json_path}"
        + (f", {png_path}" if drawn else "")
        + f"; {results['meta']['seconds']:.0f}s in all"
    )
    for name, message in errors.items():
        _say(f"FAILED {name}: {message.splitlines()[0][:300]}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
