"""`zephyr submit|tasks|task|cancel|retry|logs|workers|stats`: a thin client of the HTTP API.

Tables for people, `--json` for scripts. `--url`/`ZEPHYR_URL` and `--token`/`ZEPHYR_TOKEN` say
where the API is. Exit status: 0 done, 1 the API answered an error (printed as `code: message
(field)` on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zephyr.client import ApiError, Client

TASK_COLUMNS = ("id", "name", "type", "status", "attempts", "next_run_at")


def register(subparsers: Any) -> None:
    """Add the client commands to the `zephyr` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="API address (default: ZEPHYR_URL, else http://127.0.0.1:8080)")
    common.add_argument("--token", help="bearer token (default: ZEPHYR_TOKEN)")
    common.add_argument(
        "--tls-ca", help="CA file an https API's certificate must chain to (default: ZEPHYR_TLS_CA)"
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    submit = subparsers.add_parser("submit", parents=[common], help="create a task")
    submit.add_argument("type", nargs="?", help="task type: http, email, shell, internal, publish")
    submit.add_argument("--payload", help="payload as JSON")
    submit.add_argument("--file", "-f", help="a whole task body as JSON (`-` for stdin)")
    submit.add_argument("--name")
    submit.add_argument("--at", help="run at this RFC 3339 time")
    submit.add_argument("--delay", type=float, metavar="SECONDS", help="run after this many seconds")
    submit.add_argument("--cron", help="cron expression (recurring)")
    submit.add_argument("--timezone", help="IANA zone of --cron")
    submit.add_argument("--every", type=float, metavar="SECONDS", help="run every this many seconds")
    submit.add_argument("--priority", type=int)
    submit.add_argument("--max-attempts", type=int)
    submit.add_argument("--timeout", type=float, metavar="SECONDS")
    submit.add_argument("--idempotency-key")
    submit.add_argument(
        "--traceparent", help="W3C trace context the task's runs join (docs/observability.md)"
    )
    submit.set_defaults(func=cmd_submit)

    tasks = subparsers.add_parser("tasks", parents=[common], help="list tasks, newest first")
    tasks.add_argument("--status")
    tasks.add_argument("--type")
    tasks.add_argument("--name")
    tasks.add_argument("--limit", type=int, default=50)
    tasks.add_argument("--cursor")
    tasks.set_defaults(func=cmd_tasks)

    for name, help_text in (
        ("task", "show a task and its runs"),
        ("cancel", "cancel a task"),
        ("retry", "retry a dead task"),
        ("pause", "pause a pending task"),
        ("resume", "resume a paused task"),
    ):
        parser = subparsers.add_parser(name, parents=[common], help=help_text)
        parser.add_argument("id", help="task id")
        parser.set_defaults(func=cmd_task if name == "task" else cmd_action, action=name)

    logs = subparsers.add_parser("logs", parents=[common], help="print a run's log lines")
    logs.add_argument("run_id")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until the run ends"
    )
    logs.set_defaults(func=cmd_logs)

    workers = subparsers.add_parser("workers", parents=[common], help="list workers")
    workers.set_defaults(func=cmd_workers)

    stats = subparsers.add_parser("stats", parents=[common], help="counts, queue depth, throughput")
    stats.set_defaults(func=cmd_stats)


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.token, tls_ca=args.tls_ca)


def _run(args: argparse.Namespace, body: Callable[[Client], None]) -> int:
    try:
        with _client(args) as client:
            body(client)
    except ApiError as exc:
        where = f" ({exc.field})" if exc.field else ""
        print(f"zephyr {args.command}: {exc.code}: {exc.message}{where}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"zephyr {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while following logs: stop quietly
        return 130
    return 0


class UsageError(Exception):
    """The command line does not make a request."""


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table with a header (None shown as `-`)."""
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]
    lines = ["  ".join(column.upper().ljust(widths[i]) for i, column in enumerate(columns)).rstrip()]
    lines += ["  ".join(value.ljust(widths[i]) for i, value in enumerate(line)).rstrip() for line in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _task_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        body = _parse_json(text, "--file")
    if args.type:
        body["type"] = args.type
    if args.payload:
        body["payload"] = _parse_json(args.payload, "--payload")
    for key, value in (
        ("name", args.name),
        ("priority", args.priority),
        ("max_attempts", args.max_attempts),
        ("timeout_s", args.timeout),
        ("idempotency_key", args.idempotency_key),
    ):
        if value is not None:
            body[key] = value
    schedule: dict[str, Any] = {}
    for key, value in (
        ("at", args.at),
        ("delay_s", args.delay),
        ("cron", args.cron),
        ("timezone", args.timezone),
        ("every_s", args.every),
    ):
        if value is not None:
            schedule[key] = value
    if schedule:
        body["schedule"] = schedule
    if "type" not in body:
        raise UsageError("give a task type (or --file with a whole task)")
    return body


def _parse_json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option}: not JSON: {exc}") from None


def cmd_submit(args: argparse.Namespace) -> int:
    def body(client: Client) -> None:
        task = client.submit(_task_body(args), traceparent=args.traceparent)
        if args.json:
            print_json(task)
        else:
            print(table([task], TASK_COLUMNS))
        for warning in task.get("warnings", ()):
            print(f"warning: {warning['message']}", file=sys.stderr)

    return _run(args, body)


def cmd_tasks(args: argparse.Namespace) -> int:
    def body(client: Client) -> None:
        page = client.list_tasks(
            status=args.status, type=args.type, name=args.name, limit=args.limit, cursor=args.cursor
        )
        if args.json:
            print_json(page)
            return
        print(table(page["tasks"], TASK_COLUMNS))
        if page["next_cursor"]:
            print(f"more: --cursor {page['next_cursor']}")

    return _run(args, body)


def cmd_task(args: argparse.Namespace) -> int:
    def body(client: Client) -> None:
        task = client.get_task(args.id)
        runs = client.list_runs(args.id, limit=20)["runs"]
        if args.json:
            print_json({**task, "runs": runs})
            return
        fields = (*TASK_COLUMNS, "priority", "max_attempts", "timeout_s", "created_at", "updated_at")
        width = max(len(field) for field in (*fields, "schedule", "payload"))
        for field in fields:
            print(f"{field.ljust(width)}  {_cell(task.get(field))}")
        print(f"{'schedule'.ljust(width)}  {_cell(task.get('schedule'))}")
        print(f"{'payload'.ljust(width)}  {_cell(task.get('payload'))}")
        if runs:
            print()
            print(table(runs, ("id", "attempt", "status", "worker_id", "started_at", "finished_at", "error")))

    return _run(args, body)


def cmd_action(args: argparse.Namespace) -> int:
    def body(client: Client) -> None:
        task = getattr(client, args.action)(args.id)
        if args.json:
            print_json(task)
        else:
            print(table([task], TASK_COLUMNS))

    return _run(args, body)


def cmd_logs(args: argparse.Namespace) -> int:
    def body(client: Client) -> None:
        lines = client.follow_logs(args.run_id) if args.follow else iter(_all_logs(client, args.run_id))
        for line in lines:
            if args.json:
                print(json.dumps(line, ensure_ascii=False), flush=True)
            else:
                print(f"{line['ts']} {line['stream']:<6} {line['line']}", flush=True)

    return _run(args, body)


def _all_logs(client: Client, run_id: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.logs(run_id, cursor=cursor)
        lines += page["logs"]
        cursor = page["next_cursor"]
        if not cursor:
            return lines


def cmd_workers(args: argparse.Namespace) -> int:
    def body(client: Client) -> None:
        workers = client.workers()
        if args.json:
            print_json({"workers": workers})
        else:
            print(
                table(
                    workers,
                    ("id", "host", "status", "capacity", "running", "task_types", "last_heartbeat_at"),
                )
            )

    return _run(args, body)


def cmd_stats(args: argparse.Namespace) -> int:
    def body(client: Client) -> None:
        stats = client.stats()
        if args.json:
            print_json(stats)
            return
        rows = [{"status": status, "tasks": count} for status, count in stats["tasks"].items()]
        print(table(rows, ("status", "tasks")))
        print()
        for key in ("queue_depth", "oldest_due_age_s", "workers", "runs_per_s"):
            approximate = " (at least)" if key in stats.get("approximate", ()) else ""
            print(f"{key:<17} {stats[key]}{approximate}")
        for task_type in stats.get("types_without_worker", ()):
            pending = stats["pending_by_type"].get(task_type, 0)
            print(f"warning: {pending} pending {task_type} tasks and no active worker offers {task_type}")

    return _run(args, body)
