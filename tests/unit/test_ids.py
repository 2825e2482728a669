from __future__ import annotations

from zephyr.ids import new_id, new_ids


def test_ids_are_version_7_and_strictly_increasing_even_within_a_millisecond() -> None:
    ids = new_ids(20_000)  # spans many milliseconds with hundreds of ids within each
    assert all(value.version == 7 for value in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert new_id() > ids[-1]
