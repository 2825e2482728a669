"""A real headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium, plus
axe-core (npm) injected from the test's own copy.

Nothing is downloaded by Selenium: the driver path is given, so Selenium Manager is skipped, and
the browser starts with background networking, component updates and sync off, in a fresh profile.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.support.host_tools import require_debian_packages, require_npm_packages

AXE_PACKAGE = "axe-core@4"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--window-size=1400,1000",
)
# Impacts that fail the accessibility check; "moderate" and "minor" findings are printed only.
FAILING_IMPACTS = frozenset({"serious", "critical"})


@contextmanager
def chromium(profile_dir: Path, log_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium in `profile_dir` (a fresh --user-data-dir); chromedriver logs to `log_path`."""
    require_debian_packages({"chromium": "chromium", "chromedriver": "chromium-driver"})
    options = Options()
    options.binary_location = str(shutil.which("chromium"))
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    service = Service(executable_path=str(shutil.which("chromedriver")), log_output=str(log_path))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_script_timeout(60)
        yield driver
    finally:
        driver.quit()


def axe_source() -> str:
    """axe-core's browser build, from the npm package installed for the tests."""
    modules = require_npm_packages([AXE_PACKAGE])
    return (modules / "axe-core" / "axe.min.js").read_text()


def axe_violations(
    driver: WebDriver, source: str, disabled_rules: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Run axe-core on the current page; the violations of serious or critical impact (each with
    its rule id, impact, help text and offending elements). Lesser ones are printed."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(source)
    options = {"resultTypes": ["violations"]}
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.axe.run(document, arguments[0])"
        ".then((r) => done(r.violations)).catch((e) => done({error: String(e)}));",
        options,
    )
    if isinstance(result, dict):
        raise RuntimeError(f"axe-core failed: {result.get('error')}")
    summary = [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["html"][:200] for n in v["nodes"][:5]],
        }
        for v in result
    ]
    lesser = [v for v in summary if v["impact"] not in FAILING_IMPACTS]
    if lesser:
        print("axe findings below serious:", json.dumps(lesser, indent=1))
    return [v for v in summary if v["impact"] in FAILING_IMPACTS]
