"""The stored form of a validated task: what the rows hold (zephyr.taskstore)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from zephyr import taskstore
from zephyr.scheduler import schemas


def test_stored_payload_is_what_was_sent_without_defaults() -> None:
    task = schemas.validate_task({"type": "http", "payload": {"url": "https://x.example/a"}})
    assert taskstore.stored_payload(task.payload) == {"url": "https://x.example/a"}
    task = schemas.validate_task(
        {"type": "email", "payload": {"to": "a@b", "subject": "s", "body": "b", "from": {"$secret": "FROM"}}}
    )
    assert taskstore.stored_payload(task.payload) == {
        "to": "a@b", "subject": "s", "body": "b", "from": {"$secret": "FROM"}
    }  # fmt: skip


def test_stored_schedule_normalises_times_to_utc() -> None:
    task = schemas.validate_task(
        {
            "type": "internal",
            "payload": {"function": "f"},
            "schedule": {
                "every_s": 30,
                "start_at": "2030-01-01T01:00:00+01:00",
                "end_at": "2030-02-01T00:00:00",
            },
        }
    )
    assert taskstore.stored_schedule(task.schedule) == {
        "every_s": 30.0, "start_at": "2030-01-01T00:00:00Z", "end_at": "2030-02-01T00:00:00Z"
    }  # fmt: skip
    assert taskstore.stored_schedule(None) is None


def test_stored_payload_json_is_the_stored_payload() -> None:
    task = schemas.validate_task(
        {
            "type": "http",
            # URLs are ASCII (zephyr.tasktypes.urls): the non-ASCII text is a header's
            "payload": {
                "url": "https://x.example/",
                "timeout_s": 5,
                "headers": {"a": {"$secret": "A"}, "b": "é"},
            },
        }
    )
    text = taskstore.stored_payload_json(task.payload)
    assert json.loads(text) == taskstore.stored_payload(task.payload)
    assert '"timeout_s":5.0' in text  # as validated, like the stored payload


def test_rfc3339_is_utc_with_a_z_and_none_stays_none() -> None:
    paris_winter = timezone(timedelta(hours=1))
    assert taskstore.rfc3339(datetime(2030, 1, 1, 1, 0, tzinfo=paris_winter)) == "2030-01-01T00:00:00Z"
    assert taskstore.rfc3339(datetime(2030, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)) == "2030-01-01T00:00:00.001500Z"
    assert taskstore.rfc3339(None) is None


def test_json_text_is_compact_json() -> None:
    value = {"every_s": 30.0, "start_at": "2030-01-01T00:00:00Z", "é": [1, None, True]}
    text = taskstore.json_text(value)
    assert json.loads(text) == value
    assert " " not in text
