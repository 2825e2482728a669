"""Entry point of the worker service: `python cmd/worker.py [flags]`, same as `zephyr worker`."""

import sys

from zephyr.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
