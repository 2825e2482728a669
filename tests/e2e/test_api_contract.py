"""The API contract, checked by a machine: schemathesis runs every check it has against a real
scheduler process with tokens on, from the scheduler's own /openapi.json.

Its phases: the coverage phase (boundary and invalid values of every parameter and body field),
fuzzing (positive and negative data) and the stateful phase (chains of calls along the links it
infers: create a task, then read, patch, pause, cancel it...). Checks include: no 5xx, only
documented status codes, content types and headers, responses matching their schemas,
schema-valid requests accepted, schema-invalid ones refused, 405 with the right `Allow`, auth not
ignored. The seed is fixed and the examples per operation bounded, so a run is repeatable and
takes a few minutes; the test fails on any failure or error schemathesis reports and prints its
summary line.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.support.cluster import Cluster

# About 2 minutes on a quiet 2-core machine; the limits leave room for a loaded one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TOKEN = "contract-test-token"
SEED = 20261203
# Examples per operation and phase: with 22 operations the coverage phase dominates the run.
MAX_EXAMPLES = 30
RUN_TIMEOUT_S = 540.0
SUMMARY = re.compile(r"^=+ (.+ in [0-9.]+s) =+$", re.MULTILINE)


def schemathesis_argv(base_url: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--generation-database",
        "none",  # no examples replayed from an earlier run: each run is the seed's alone
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Bearer {TOKEN}",
    ]


async def test_schemathesis_finds_nothing_against_the_live_api(database_url: str, tmp_path: Path) -> None:
    async with Cluster(database_url, tmp_path) as cluster:
        scheduler = await cluster.start_scheduler(ZEPHYR_API_TOKENS=TOKEN)
        process = await asyncio.create_subprocess_exec(
            *schemathesis_argv(scheduler.addr),
            cwd=tmp_path,  # whatever schemathesis writes stays out of the repository
            env={**os.environ, "NO_COLOR": "1"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            raw, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    output = raw.decode(errors="replace")
    summaries = SUMMARY.findall(output)
    print(f"schemathesis: {summaries[-1] if summaries else 'no summary line'}")
    assert process.returncode == 0 and summaries, output[-30_000:]
    assert not re.search(r"\b[1-9][0-9]* (failures?|errors?)\b", summaries[-1]), output[-30_000:]
