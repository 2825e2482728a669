"""Entry point of the coordinator service: `python cmd/coordinator.py [flags]`, same as `zephyr coordinator`."""

import sys

from zephyr.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["coordinator", *sys.argv[1:]]))
