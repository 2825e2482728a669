"""The autoscale rule alone: when `zephyr up --autoscale` adds workers and which it drains."""

from __future__ import annotations

import pytest

from zephyr.cli.autoscale import Bounds, Load, Policy, parse_bounds


def load(due: int = 0, free: int = 0, registered: str = "", busy: str = "") -> Load:
    return Load(due, free, frozenset(registered.split()), frozenset(busy.split()))


def test_bounds_parse_and_refuse_what_they_cannot_mean() -> None:
    assert parse_bounds("1:4") == Bounds(1, 4)
    assert parse_bounds("0:1") == Bounds(0, 1)
    for bad in ("4", "4:1", "a:b", "0:0", "-1:2", "1:2:3"):
        with pytest.raises(ValueError):
            parse_bounds(bad)


def test_starts_the_minimum_then_enough_for_waiting_work_up_to_the_maximum() -> None:
    policy = Policy(Bounds(1, 4), concurrency=10)
    assert policy.decide(load(), [], starting=0, now=0).start == 1
    # 25 due, no free slot: 3 workers' worth, capped at 4 workers in all.
    assert policy.decide(load(due=25, registered="a"), ["a"], 0, 1).start == 3
    assert policy.decide(load(due=500, registered="a b"), ["a", "b"], 0, 1).start == 2


def test_waits_while_slots_are_free_or_workers_are_still_starting_or_at_the_maximum() -> None:
    policy = Policy(Bounds(1, 4), concurrency=10)
    assert policy.decide(load(due=25, free=3, registered="a"), ["a"], 0, 1).start == 0
    assert policy.decide(load(due=25, registered="a"), ["a", "b"], starting=1, now=1).start == 0
    four = ["a", "b", "c", "d"]
    assert policy.decide(load(due=25, registered="a b c d"), four, 0, 1).start == 0


def test_drains_idle_workers_youngest_first_after_the_idle_time_down_to_the_minimum() -> None:
    policy = Policy(Bounds(1, 4), concurrency=10, idle_s=5)
    workers = ["a", "b", "c"]
    idle = load(registered="a b c", busy="b")
    assert policy.decide(idle, workers, 0, now=0).drain == ()
    assert policy.decide(idle, workers, 0, now=4).drain == ()
    # b holds a run, so the idle c and a go (youngest first): three workers down to the minimum of one.
    assert policy.decide(idle, workers, 0, now=5).drain == ("c", "a")


def test_waiting_work_resets_idleness_and_a_busy_worker_is_never_chosen() -> None:
    policy = Policy(Bounds(0, 3), concurrency=10, idle_s=5)
    workers = ["a", "b"]
    policy.decide(load(registered="a b"), workers, 0, now=0)
    policy.decide(load(due=1, free=5, registered="a b"), workers, 0, now=3)
    assert policy.decide(load(registered="a b", busy="a"), workers, 0, now=6).drain == ()
    assert policy.decide(load(registered="a b", busy="a"), workers, 0, now=11).drain == ("b",)
