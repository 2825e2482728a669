"""`zephyr` console script: one sub-command per service, the local cluster and the API client."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# A worker forks shell commands while gRPC threads run. gRPC's fork handlers then skip their work
# ("Other threads are currently calling into gRPC") and about 1 child in 30 died of SIGSEGV before
# exec. Zephyr never uses gRPC in a forked child, so the handlers are turned off for every service.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

# Each module exposes `register(subparsers)`, which adds its commands with `func=` defaults.
COMMAND_MODULES = (
    "zephyr.cli.services",
    "zephyr.cli.up",
    "zephyr.cli.probe",
    "zephyr.cli.certs",
    "zephyr.cli.client_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zephyr", description="Zephyr distributed task scheduler")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in `argv` and return its exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
