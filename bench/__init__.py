"""Zephyr benchmarks (issue 6): `python -m bench` or `make bench`.

Each scenario starts what it needs (its own database on one PostgreSQL server, services as
subprocesses), measures, stops everything and returns a plain dict of figures; `__main__` prints
them as a table, writes `bench/results/*.json` and draws `bench/results/bench.png`.
"""
