"""zephyr.tracing's start-up decisions, each in a fresh interpreter (what a service would load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Calls tracing.setup with the environment given and prints whether export is on, the modules
# of OpenTelemetry loaded and what was logged. argv[1]: "block" hides the SDK from imports.
PROBE = """
import json, logging, sys
if sys.argv[1] == "block":
    sys.modules["opentelemetry.sdk"] = None
records = []
logging.basicConfig(level=logging.INFO, handlers=[logging.Handler()])
logging.getLogger().handlers[0].emit = lambda record: records.append(record.getMessage())
from zephyr import tracing
on = tracing.setup("worker")
tracing.shutdown()
print(json.dumps({"on": on, "otel": any(m.startswith("opentelemetry") for m in sys.modules),
                  "logged": records}))
"""


def probe(env: dict[str, str], block: bool = False) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "block" if block else "-"],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_without_the_endpoint_nothing_of_opentelemetry_is_loaded() -> None:
    assert probe({}) == {"on": False, "otel": False, "logged": []}


def test_otel_sdk_disabled_wins() -> None:
    result = probe({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"})
    assert result == {"on": False, "otel": False, "logged": []}


def test_with_the_endpoint_spans_are_exported() -> None:
    result = probe({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"})
    assert result["on"] is True
    assert result["logged"] == ["exporting spans over OTLP/HTTP as zephyr-worker"]
    named = probe({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SERVICE_NAME": "w1"})
    assert named["logged"] == ["exporting spans over OTLP/HTTP as w1"]


def test_without_the_sdk_one_line_says_so() -> None:
    result = probe({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, block=True)
    assert result["on"] is False
    logged = result["logged"]
    assert isinstance(logged, list) and len(logged) == 1
    assert "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed" in logged[0]
