"""Each service loads only its own code and the shared modules: the layout's promises, kept.

Every check imports in a fresh interpreter (`python -c`) and reads `sys.modules` there, so what
this test process already imported cannot hide or fake a dependency.

The rules:
- `import zephyr` (user modules do it for `@zephyr.task`) loads no service package
  (`zephyr.scheduler`, `zephyr.coordinator`, `zephyr.worker`), no database code (`zephyr.db`,
  asyncpg) and no grpc.
- The scheduler (its entry module and every module of `zephyr.scheduler`) loads nothing of
  `zephyr.worker` or `zephyr.coordinator`.
- The coordinator (its entry module and every module of `zephyr.coordinator`) loads nothing of
  `zephyr.worker` or `zephyr.scheduler`.
- The worker (its entry module and every module of `zephyr.worker`, every executor included)
  loads nothing of `zephyr.db`, `zephyr.taskstore`, `zephyr.scheduler` or `zephyr.coordinator`:
  workers hold no database credentials and never touch Zephyr's tables. The one database driver
  use allowed is the publish executor's own asyncpg connection for NOTIFY, so `asyncpg` itself
  may be loaded; the product's pool and named queries (`zephyr.db.*`) may not.
- No service loads OpenTelemetry unless span export is asked for (zephyr.tracing).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zephyr.cli.services import SERVICES

# Loads what `zephyr <service>` loads (the CLI, then the service's module), then every module of
# `package`, and prints the names of all modules loaded.
PROBE = """
import importlib, json, pkgutil, sys
import zephyr.cli.main
from zephyr.cli.services import SERVICES
importlib.import_module(SERVICES[sys.argv[1]][1])
package = importlib.import_module(sys.argv[2])
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules(code: str, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, timeout=120
    )
    modules: list[str] = json.loads(out.stdout)
    return modules


def under(modules: list[str], *packages: str) -> list[str]:
    """The modules that are one of `packages` or inside one."""
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_import_zephyr_loads_no_service_database_or_grpc_code() -> None:
    modules = loaded_modules(
        "import json, sys, zephyr; zephyr.task('a.b'); print(json.dumps(sorted(sys.modules)))"
    )
    assert "zephyr" in modules
    forbidden = ("zephyr.scheduler", "zephyr.coordinator", "zephyr.worker", "zephyr.db", "asyncpg", "grpc")
    assert under(modules, *forbidden) == []


@pytest.mark.parametrize(
    ("service", "package", "forbidden"),
    [
        ("scheduler", "zephyr.scheduler", ("zephyr.worker", "zephyr.coordinator", "opentelemetry")),
        ("coordinator", "zephyr.coordinator", ("zephyr.worker", "zephyr.scheduler", "opentelemetry")),
        (
            "worker",
            "zephyr.worker",
            ("zephyr.db", "zephyr.taskstore", "zephyr.scheduler", "zephyr.coordinator", "opentelemetry"),
        ),
    ],
)
def test_a_service_loads_no_other_service_code(
    service: str, package: str, forbidden: tuple[str, ...]
) -> None:
    assert SERVICES[service][1].startswith(package + ".")
    modules = loaded_modules(PROBE, service, package)
    assert SERVICES[service][1] in modules
    assert under(modules, *forbidden) == []
