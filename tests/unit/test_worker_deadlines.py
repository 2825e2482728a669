"""Shared run deadlines: never early, once per item, and no timer left behind."""

from __future__ import annotations

import asyncio

from zephyr.worker.deadlines import Deadlines


async def test_items_expire_once_and_not_before_their_deadline() -> None:
    loop = asyncio.get_running_loop()
    expired: list[tuple[str, float]] = []
    deadlines: Deadlines[str] = Deadlines(lambda item: expired.append((item, loop.time())))
    started = loop.time()
    for item in ("a", "b"):
        deadlines.add(item, 0.05)
    deadlines.add("later", 0.1)
    await asyncio.sleep(0.2)
    assert sorted(item for item, _ in expired) == ["a", "b", "later"]
    by_item = dict(expired)
    assert by_item["a"] - started >= 0.05 and by_item["later"] - started >= 0.1
    assert len(deadlines) == 0


async def test_removed_items_never_expire_and_their_timer_is_cancelled() -> None:
    expired: list[str] = []
    deadlines: Deadlines[str] = Deadlines(expired.append)
    key_a = deadlines.add("a", 0.05)
    key_b = deadlines.add("b", 0.05)
    key_c = deadlines.add("c", 0.03)
    deadlines.remove("a", key_a)
    deadlines.remove("b", key_b)
    assert len(deadlines) == 1 and key_a not in deadlines._due  # not the newest: stopped at once
    deadlines.remove("c", key_c)
    assert len(deadlines) == 0 and list(deadlines._due) == [key_c]  # the newest stays armed...
    await asyncio.sleep(0.1)
    assert expired == [] and not deadlines._due  # ...and fired with nothing to do
    deadlines.remove("c", key_c)  # again, or after expiry: a no-op


async def test_an_idle_newest_timer_is_stopped_when_a_later_deadline_comes() -> None:
    deadlines: Deadlines[str] = Deadlines(lambda _: None)
    first = deadlines.add("a", 30)
    deadlines.remove("a", first)
    timer = deadlines._due[first][0]
    deadlines.add("b", 60)
    assert first not in deadlines._due and timer.cancelled()


async def test_runs_of_one_burst_share_a_timer() -> None:
    deadlines: Deadlines[int] = Deadlines(lambda _: None)
    keys = {deadlines.add(i, 30) for i in range(100)}
    assert len(deadlines._due) == len(keys) <= 2  # at most a millisecond boundary in between
    for i in range(100):
        for key in keys:
            deadlines.remove(i, key)
    assert len(deadlines) == 0 and len(deadlines._due) <= 1
