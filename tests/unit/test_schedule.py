"""zephyr.schedule: first and next firings, DST-correct cron, start_at/end_at, folding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from zephyr.schedule import cron_next, first_fire, is_recurring, next_fire, wants_overlap

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def firings(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Every firing in (start, end], each computed from the previous one, as a recurring task would."""
    out: list[datetime] = []
    moment = start
    while (moment := cron_next(expression, zone, moment)) <= end:
        out.append(moment)
    return out


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # spring forward: 02:00 CET -> 03:00 CEST; 02:30 does not exist and runs at 03:30 CEST
        ("2026-03-29", "2026-03-29T03:30:00+02:00"),
        # fall back: 03:00 CEST -> 02:00 CET; 02:30 happens twice and runs at the first one
        ("2026-10-25", "2026-10-25T02:30:00+02:00"),
        ("2026-06-15", "2026-06-15T02:30:00+02:00"),
    ],
)
def test_daily_0230_paris_runs_exactly_once_on_dst_days(day: str, expected: str) -> None:
    midnight = datetime.fromisoformat(day).replace(tzinfo=PARIS)
    start, end = midnight.astimezone(UTC), (midnight + timedelta(days=1)).astimezone(UTC)
    got = [
        f for f in firings("30 2 * * *", "Europe/Paris", start - timedelta(microseconds=1), end) if f < end
    ]
    assert got == [utc(expected)]


def test_daily_0230_paris_over_a_whole_year_fires_once_a_day() -> None:
    start = datetime(2026, 1, 1, tzinfo=PARIS).astimezone(UTC)
    end = datetime(2027, 1, 1, tzinfo=PARIS).astimezone(UTC)
    got = firings("30 2 * * *", "Europe/Paris", start, end)
    assert len(got) == 365
    assert len({f.astimezone(PARIS).date() for f in got}) == 365
    assert all(f.astimezone(PARIS).strftime("%H:%M") in ("02:30", "03:30") for f in got)
    assert [f.astimezone(PARIS).date().isoformat() for f in got if f.astimezone(PARIS).hour == 3] == [
        "2026-03-29"
    ]


@pytest.mark.parametrize("day", [(2026, 3, 28, 22), (2026, 10, 24, 22)])
def test_every_30_minutes_keeps_real_time_across_dst(day: tuple[int, int, int, int]) -> None:
    start = datetime(*day, tzinfo=UTC)
    got = firings("*/30 * * * *", "Europe/Paris", start, start + timedelta(hours=6))
    assert got == [start + timedelta(minutes=30 * n) for n in range(1, 13)]


def test_hourly_fires_every_real_hour_through_fall_back() -> None:
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    got = firings("0 * * * *", "Europe/Paris", start, start + timedelta(hours=6))
    assert got == [start + timedelta(hours=n) for n in range(1, 7)]


def test_fixed_hour_in_new_york() -> None:
    got = firings("0 9 * * 1-5", "America/New_York", utc("2026-10-30T00:00:00Z"), utc("2026-11-04T00:00:00Z"))
    # Friday before and Monday/Tuesday after the November change: 09:00 local, 13:00 then 14:00 UTC
    assert got == [utc("2026-10-30T13:00:00Z"), utc("2026-11-02T14:00:00Z"), utc("2026-11-03T14:00:00Z")]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (None, NOW),
        ({}, NOW),
        ({"at": "2030-01-01T10:00:00+02:00"}, utc("2030-01-01T08:00:00Z")),
        ({"at": "2030-01-01T10:00:00"}, utc("2030-01-01T10:00:00Z")),
        ({"delay_s": 90}, NOW + timedelta(seconds=90)),
        ({"cron": "0 9 * * *", "timezone": "Europe/Paris"}, utc("2026-06-16T07:00:00Z")),
        ({"cron": "0 12 * * *"}, NOW),  # a tick exactly now counts
        ({"every_s": 600}, NOW + timedelta(seconds=600)),
        ({"every_s": 600, "start_at": "2026-07-01T00:00:00Z"}, utc("2026-07-01T00:00:00Z")),
        # started in the past: the next tick on the start_at grid
        ({"every_s": 600, "start_at": "2026-06-15T11:55:00Z"}, utc("2026-06-15T12:05:00Z")),
        ({"cron": "0 9 * * *", "start_at": "2026-07-01T00:00:00Z"}, utc("2026-07-01T09:00:00Z")),
        ({"every_s": 600, "end_at": "2026-06-15T12:05:00Z"}, None),
        ({"cron": "0 9 * * *", "end_at": "2026-06-16T06:59:00Z"}, None),
    ],
)
def test_first_fire(schedule: dict[str, Any] | None, expected: datetime | None) -> None:
    assert first_fire(schedule, NOW) == expected


def test_next_fire_folds_missed_ticks_and_stays_on_grid() -> None:
    schedule = {"every_s": 60}
    previous = utc("2026-06-15T12:00:00Z")
    assert next_fire(schedule, previous=previous, now=previous) == previous + timedelta(seconds=60)
    # claimed late, after 5.5 missed periods: one firing, next tick on the grid
    late = previous + timedelta(seconds=330)
    assert next_fire(schedule, previous=previous, now=late) == previous + timedelta(seconds=360)
    cron = {"cron": "*/5 * * * *"}
    assert next_fire(cron, previous=previous, now=previous + timedelta(minutes=12)) == previous + timedelta(
        minutes=15
    )


def test_next_fire_ends_at_end_at() -> None:
    schedule = {"every_s": 60, "end_at": "2026-06-15T12:01:30Z"}
    previous = utc("2026-06-15T12:00:00Z")
    assert next_fire(schedule, previous=previous, now=previous) == utc("2026-06-15T12:01:00Z")
    assert next_fire(schedule, previous=utc("2026-06-15T12:01:00Z"), now=utc("2026-06-15T12:01:00Z")) is None


def test_recurring_and_overlap_flags() -> None:
    assert is_recurring({"cron": "* * * * *"}) and is_recurring({"every_s": 1})
    assert not is_recurring({"at": "2030-01-01T00:00:00Z"}) and not is_recurring(None)
    assert wants_overlap({"every_s": 1, "overlap": True})
    assert not wants_overlap({"every_s": 1}) and not wants_overlap(None)


def reference_firings(expression: str, zone_name: str, start: datetime, end: datetime) -> list[datetime]:
    """Brute force over every UTC minute in (start, end]: the rules cron_next promises, stated
    directly. A minute fires when its wall time matches (in a repeated hour, the second pass only
    for a wildcard hour field), or when it is the instant a skipped wall time maps to."""
    from croniter import croniter

    zone = ZoneInfo(zone_name)
    wildcard_hour = expression.split()[1].startswith("*")
    out: list[datetime] = []
    moment = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while moment <= end:
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None)
        repeated = (
            wall.replace(tzinfo=zone, fold=0).utcoffset() != wall.replace(tzinfo=zone, fold=1).utcoffset()
        )
        second_pass = repeated and local.fold == 1
        fires = croniter.match(expression, wall) and (not second_pass or wildcard_hour)
        # a wall time skipped by spring-forward maps (fold=0 offset) to this instant
        before = local.utcoffset()
        shifted = (moment + (before or timedelta()) - timedelta(hours=1)).replace(tzinfo=None)
        skipped = (
            shifted.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != shifted
        )
        if not fires and skipped and croniter.match(expression, shifted):
            fires = shifted.replace(tzinfo=zone, fold=0).astimezone(UTC) == moment
        if fires:
            out.append(moment)
        moment += timedelta(minutes=1)
    return out


@pytest.mark.parametrize("expression", ["30 2 * * *", "*/5 * * * *", "0 * * * *", "15 1-3 * * *", "*/7 * * * *",
                                        "*/20 2 * * *", "0 3 * * *", "59 1 * * *", "45 */2 * * *", "0 2 * * 0"])  # fmt: skip
@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("Europe/Paris", "2026-03-29T01:00:00Z"),
        ("Europe/Paris", "2026-10-25T01:00:00Z"),
        ("America/New_York", "2026-03-08T07:00:00Z"),
        ("America/New_York", "2026-11-01T06:00:00Z"),
        ("Australia/Sydney", "2026-04-04T16:00:00Z"),
        ("Australia/Sydney", "2026-10-03T16:00:00Z"),
    ],
)
def test_cron_next_matches_the_brute_force_rules_around_dst_changes(
    expression: str, zone: str, change: str
) -> None:
    start = utc(change) - timedelta(hours=5)
    end = utc(change) + timedelta(hours=5)
    assert firings(expression, zone, start, end) == reference_firings(expression, zone, start, end)
