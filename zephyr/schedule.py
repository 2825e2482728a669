"""When a task fires: the first time from its `schedule`, and each next time of a recurring one.

Schedules are the JSON objects of the API, already validated: absent (now), `{"at"}`,
`{"delay_s"}`, `{"cron", "timezone"}` or `{"every_s"}`, the recurring two with optional
`start_at`, `end_at` and `overlap`. All instants are aware datetimes in UTC.

Recurring rule: when a firing scheduled for `previous` is claimed at `now`, the next firing is
the first tick strictly after `now`. Ticks missed while nothing ran (downtime, a long run) are
folded into the firing that runs, so a missed window fires once, not once per tick; ticks stay
on their grid (cron times, or `previous + k * every_s`), so the schedule never drifts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

RECURRING_KEYS = ("cron", "every_s")


def _names(*names: str) -> str:
    """A regex alternative matching each 3-letter name in any case (JSON Schema has no (?i))."""
    return "|".join("".join(f"[{c.upper()}{c.lower()}]" for c in name) for name in names)


def _cron_field(number: str, step: str, names: str = "") -> str:
    value = f"(?:{number}|{names})" if names else number
    element = f"(?:\\*|{value}(?:-{value})?)(?:/{step})?"
    return f"{element}(?:,{element})*"


# The cron expressions a task may use: five fields of numbers within each field's range (or month
# and weekday names), `*`, ranges, lists and steps from 1 to the field's size. Written as one
# regex so that /openapi.json can publish exactly the rule the API checks. croniter alone took
# steps beyond the range (`*/61`), which fire at a time no one meant.
CRON_PATTERN = (
    "^"
    + " ".join(
        (
            _cron_field("[0-5]?[0-9]", "(?:[1-9]|[1-5][0-9]|60)"),  # minute 0-59
            _cron_field("(?:[01]?[0-9]|2[0-3])", "(?:[1-9]|1[0-9]|2[0-4])"),  # hour 0-23
            _cron_field("(?:[1-9]|[12][0-9]|3[01])", "(?:[1-9]|[12][0-9]|3[01])"),  # day of month 1-31
            _cron_field(  # month 1-12
                "(?:[1-9]|1[0-2])",
                "(?:[1-9]|1[0-2])",
                _names("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
            ),
            _cron_field("[0-7]", "[1-7]", _names("sun", "mon", "tue", "wed", "thu", "fri", "sat")),  # weekday
        )
    )
    + "$"
)
_CRON = re.compile(CRON_PATTERN)


def is_valid_cron(expression: str) -> bool:
    """True when `expression` follows CRON_PATTERN (and croniter agrees)."""
    return _CRON.fullmatch(expression) is not None and croniter.is_valid(expression)


def parse_instant(text: str) -> datetime:
    """RFC 3339 text to an aware UTC datetime; a naive time is taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def is_recurring(schedule: Mapping[str, Any] | None) -> bool:
    return bool(schedule) and any(key in schedule for key in RECURRING_KEYS)  # type: ignore[operator]


def wants_overlap(schedule: Mapping[str, Any] | None) -> bool:
    return bool(schedule and schedule.get("overlap"))


def cron_next(expression: str, timezone: str, after: datetime) -> datetime:
    """First tick of `expression` in `timezone` strictly after `after` (UTC in, UTC out).

    Walks wall-clock time in the zone, with the rules of classic cron at DST changes:
    - spring forward: a wall time inside the gap maps to the instant just after it (a daily
      02:30 Europe/Paris job runs at 03:30 summer time that day: once);
    - fall back: a repeated wall time fires at its first occurrence only when the hour field
      names fixed hours (a daily 02:30 job runs once); a job whose hour field is a wildcard
      (`*`, `*/2`) also fires in the repeated hour, so "every 5 minutes" keeps going in real time.
    """
    zone = ZoneInfo(timezone)
    repeat_in_fold = expression.split()[1].startswith("*")
    # Within an hour of an offset change, start one hour early in wall time, so that wall times
    # croniter's naive iteration would pass over are seen: second occurrences (fold=1) of a
    # repeated hour, and skipped times that map to instants after `after`. Elsewhere start at
    # `after` (an every-minute job then costs one step, not sixty).
    local = after.astimezone(zone)
    near_change = any(
        local.utcoffset() != (after + timedelta(minutes=delta)).astimezone(zone).utcoffset()
        for delta in (-61, 61)
    )
    local_after = local.replace(tzinfo=None) - (timedelta(hours=1) if near_change else timedelta(0))
    itr = croniter(expression, local_after)
    best: datetime | None = None
    while True:
        wall: datetime = itr.get_next(datetime)
        first = _resolve_wall_time(wall, zone)
        if best is not None and first > best:
            return best
        candidates = [first]
        if repeat_in_fold:
            second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
            # Only a repeated wall time has a second occurrence; in a spring-forward gap fold=1
            # names an instant before the gap whose wall clock shows another time.
            if second != first and second.astimezone(zone).replace(tzinfo=None) == wall:
                candidates.append(second)
        for instant in candidates:
            if instant > after and (best is None or instant < best):
                best = instant


def _resolve_wall_time(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of naive wall time `wall` in `zone`.

    fold=0 takes the offset in force before a transition: a repeated time (fall-back) resolves to
    its first occurrence, and a skipped time (spring-forward) to the instant the wall clock would
    have shown had it not jumped, which lies just after the gap.
    """
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def first_fire(schedule: Mapping[str, Any] | None, now: datetime) -> datetime | None:
    """When a new task with `schedule` first fires (None: its window has already closed)."""
    if not schedule:
        return now
    if "at" in schedule:
        return parse_instant(schedule["at"])
    if "delay_s" in schedule:
        return now + timedelta(seconds=float(schedule["delay_s"]))
    start = parse_instant(schedule["start_at"]) if schedule.get("start_at") else None
    end = parse_instant(schedule["end_at"]) if schedule.get("end_at") else None
    if "cron" in schedule:
        base = max(now, start) if start else now
        fire = cron_next(
            schedule["cron"], schedule.get("timezone") or "UTC", base - timedelta(microseconds=1)
        )
    else:
        period = timedelta(seconds=float(schedule["every_s"]))
        if start is None:
            fire = now + period
        elif start >= now:
            fire = start
        else:
            fire = start + period * math.ceil((now - start) / period)
    if end is not None and fire > end:
        return None
    return fire


def next_fire(schedule: Mapping[str, Any], *, previous: datetime, now: datetime) -> datetime | None:
    """Next firing of a recurring task whose firing scheduled for `previous` ran at `now`.

    None when the schedule has ended (`end_at` passed).
    """
    if "cron" in schedule:
        fire = cron_next(schedule["cron"], schedule.get("timezone") or "UTC", max(previous, now))
    else:
        period = timedelta(seconds=float(schedule["every_s"]))
        ticks = math.floor((now - previous) / period) + 1 if now >= previous else 1
        fire = previous + period * ticks
    end = parse_instant(schedule["end_at"]) if schedule.get("end_at") else None
    if end is not None and fire > end:
        return None
    return fire
