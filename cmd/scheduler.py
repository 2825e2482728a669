"""Entry point of the scheduler service: `python cmd/scheduler.py [flags]`, same as `zephyr scheduler`."""

import sys

from zephyr.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["scheduler", *sys.argv[1:]]))
