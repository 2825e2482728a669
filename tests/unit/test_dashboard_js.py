"""The dashboard's pure functions, run by Node (the same ES modules the browser loads): durations,
chart scales, and the submit form built from the API's real OpenAPI document for every task type."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from zephyr.scheduler.dashboard import UI_DIR
from zephyr.scheduler.openapi import openapi_document
from zephyr.scheduler.schemas import TASK_TYPES
from zephyr.taskstore import TASK_STATUSES


def run_module(script: str) -> Any:
    """Run `script` as an ES module next to the dashboard's files; its one printed line as JSON."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node (Debian: nodejs) to run the dashboard's modules")
    result = subprocess.run(
        [node, "--input-type=module", "-e", script], cwd=UI_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_with_document(imports: str, expression: str) -> Any:
    """The JSON of `expression`, evaluated after `imports` with `doc` the API's OpenAPI document."""
    return run_module(
        f"{imports}const doc = {json.dumps(openapi_document())};console.log(JSON.stringify({expression}));"
    )


def test_durations_and_chart_scales() -> None:
    got = run_module(
        "import { formatDuration } from './dom.js';"
        "import { niceCeil } from './charts.js';"
        "console.log(JSON.stringify({"
        " d: [0.0042, 0.5, 3.25, 59.7, 3599.9, 3600, 7325, 90000].map(formatDuration),"
        " n: [0, 0.3, 1, 3, 7, 12, 4100].map(niceCeil)}));"
    )
    assert got["d"] == [
        "4 ms",
        "500 ms",
        "3.3 s",
        "1 min 0 s",
        "1 h 0 min",
        "1 h 0 min",
        "2 h 2 min",
        "1 d 1 h",
    ]
    assert got["n"] == [0, 0.5, 1, 5, 10, 20, 5000]


def test_the_submit_form_covers_every_task_type_of_the_api() -> None:
    got = run_with_document(
        "import { taskTypes, fieldKind, labelText } from './submit.js';",
        "taskTypes(doc).map((t) => ({"
        " type: t.type,"
        " required: t.payload.required || [],"
        " fields: Object.fromEntries(Object.entries(t.payload.properties).map(([k, s]) => [k, fieldKind(doc, s).kind])),"
        " task: Object.keys(t.task.properties).map(labelText)}))",
    )
    by_type = {entry["type"]: entry for entry in got}
    assert set(by_type) == set(TASK_TYPES)
    # A field that also takes a {"$secret": ...} reference is still edited as text.
    assert by_type["http"]["fields"]["url"] == "text"
    assert by_type["http"]["fields"]["headers"] == "json"
    assert by_type["shell"]["fields"]["command"] == "text"
    assert by_type["internal"]["fields"] == {"function": "text", "args": "json", "kwargs": "json"}
    assert "function" in by_type["internal"]["required"]
    assert "Timeout (seconds)" in by_type["http"]["task"] and "Max attempts" in by_type["http"]["task"]


def test_due_work_by_type_and_types_no_worker_offers_from_stats() -> None:
    """The overview's queue table and highlight read /v1/stats' per-type fields."""
    got = run_module(
        "import { queuesByType, unservedTypes } from './overview.js';"
        "const stats = {queue_depth_by_type: {shell: 3, http: 0}, oldest_due_age_s_by_type: {shell: 12},"
        "               pending_by_type: {shell: 5, email: 2}, types_without_worker: ['email', 'shell']};"
        "console.log(JSON.stringify({q: queuesByType(stats), u: unservedTypes(stats), none: unservedTypes({})}));"
    )
    assert got["q"] == [{"type": "shell", "due": 3, "oldest_due_age_s": 12}]
    assert got["u"] == [
        {"type": "email", "pending": 2, "oldest_due_age_s": None},
        {"type": "shell", "pending": 5, "oldest_due_age_s": 12},
    ]
    assert got["none"] == []


def test_backticked_names_become_code_spans() -> None:
    got = run_module(
        "import { codeSpans } from './dom.js';"
        "console.log(JSON.stringify(["
        " 'the `url` and `method`', '`shell`: run', 'no names', 'one ` alone', 'a `b` c ` d', '``'"
        "].map(codeSpans)));"
    )
    assert got == [
        [
            {"text": "the ", "code": False},
            {"text": "url", "code": True},
            {"text": " and ", "code": False},
            {"text": "method", "code": True},
        ],
        [{"text": "shell", "code": True}, {"text": ": run", "code": False}],
        [{"text": "no names", "code": False}],
        [{"text": "one ` alone", "code": False}],
        [{"text": "a ", "code": False}, {"text": "b", "code": True}, {"text": " c ` d", "code": False}],
        [],
    ]


def test_every_description_of_the_api_shows_without_backticks() -> None:
    """The submit form's hints are the OpenAPI descriptions: each backtick of them pairs up, so the
    hints show names as code and no stray backtick."""
    descriptions: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("description"), str):
                descriptions.append(node["description"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(openapi_document())
    got = run_module(
        "import { codeSpans } from './dom.js';"
        f"const texts = {json.dumps(descriptions)};"
        "console.log(JSON.stringify(texts.flatMap(codeSpans).filter((s) => !s.code).map((s) => s.text)));"
    )
    assert any("`" in text for text in descriptions)
    assert [text for text in got if "`" in text] == []


def test_each_chart_series_keeps_its_own_history() -> None:
    """One history helper feeds every chart: each series reads its figure from a poll, skips polls
    it has no figure for, and drops points older than the history."""
    got = run_module(
        "import { chartHistory } from './overview.js';"
        "const charts = ["
        " {id: 'a', title: 'A', format: String, series: [{name: 'x', value: (f) => f.x}]},"
        " {id: 'b', title: 'B', format: String, series: ["
        "   {name: 'y', value: (f) => f.y, skip: (f) => f.y === undefined}, {name: 'z', value: (f) => 2 * f.x}]}];"
        "const history = chartHistory(charts, 60);"
        "history.record(0, {x: 1, y: 5}); history.record(30000, {x: 2}); history.record(70000, {x: 3, y: 7});"
        "console.log(JSON.stringify(history.charts(70000).map((c) =>"
        " ({id: c.id, windowS: c.windowS, series: c.series.map((s) => [s.name, s.points.map((p) => p.v)])}))));"
    )
    assert got == [
        {"id": "a", "windowS": 60, "series": [["x", [2, 3]]]},
        {"id": "b", "windowS": 60, "series": [["y", [7]], ["z", [4, 6]]]},
    ]


def test_the_task_filters_offer_what_the_api_takes() -> None:
    """The task list's status and type filters take their choices from the OpenAPI document."""
    got = run_with_document(
        "import { queryChoices } from './apidoc.js';",
        "{status: queryChoices(doc, '/v1/tasks', 'status'), type: queryChoices(doc, '/v1/tasks', 'type'),"
        " none: queryChoices(doc, '/v1/tasks', 'name')}",
    )
    assert got == {"status": list(TASK_STATUSES), "type": list(TASK_TYPES), "none": []}
