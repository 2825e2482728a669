from __future__ import annotations

import json

import pytest

from zephyr.errors import TaskFailed
from zephyr.worker.runner import mask_value
from zephyr.worker.secrets import NO_SECRETS, Masker, may_reference_secrets, resolve


def test_resolve_replaces_references_anywhere_and_collects_values() -> None:
    payload = {
        "url": "https://x",
        "headers": {"Authorization": {"$secret": "TOKEN"}},
        "argv": ["a", {"$secret": "PW"}],
    }
    env = {"ZEPHYR_SECRET_TOKEN": "tok-123", "ZEPHYR_SECRET_PW": "hunter2"}
    resolved, values = resolve(payload, env)
    assert resolved == {"url": "https://x", "headers": {"Authorization": "tok-123"}, "argv": ["a", "hunter2"]}
    assert sorted(values) == ["hunter2", "tok-123"]
    # the input is not modified: the payload the coordinator sent keeps its references
    assert payload["headers"] == {"Authorization": {"$secret": "TOKEN"}}


def test_missing_secret_names_field_and_variable() -> None:
    with pytest.raises(TaskFailed) as info:
        resolve({"headers": {"X": {"$secret": "NOPE"}}}, {})
    assert "payload.headers.X" in str(info.value)
    assert "ZEPHYR_SECRET_NOPE" in str(info.value)
    assert info.value.code == "missing_secret"


def test_malformed_reference_is_not_retryable() -> None:
    with pytest.raises(TaskFailed) as info:
        resolve({"a": [{"$secret": "bad name"}]}, {})
    assert "payload.a[0]" in str(info.value)
    assert info.value.retryable is False


def test_a_dict_with_more_keys_is_not_a_reference() -> None:
    payload = {"x": {"$secret": "A", "other": 1}}
    assert resolve(payload, {}) == (payload, [])


def test_masker_masks_plain_and_json_escaped_forms_longest_first() -> None:
    masker = Masker(['pa"ss', "pa"])
    assert masker.mask('x pa"ss y') == "x *** y"
    assert masker.mask(json.dumps({"v": 'pa"ss'})) == '{"v": "***"}'
    assert masker.mask("papa") == "******"
    assert not Masker([""])
    assert Masker([]).mask("anything") == "anything"


def test_mask_value_keeps_json_valid() -> None:
    masker = Masker(["s3cr3t", "1"])
    value = {"body": "the s3cr3t is here", "s3cr3t": [1, "s3cr3t"], "n": 11}
    masked = mask_value(value, masker)
    assert masked == {"body": "the *** is here", "***": [1, "***"], "n": 11}
    json.loads(json.dumps(masked))


def test_a_cut_line_does_not_leak_the_start_of_a_secret() -> None:
    masker = Masker(["abcdef"])
    assert masker.mask("xx abc", cut=True) == "xx ***"
    assert masker.mask("xx abc") == "xx abc"  # a whole line ending so is not a secret
    assert masker.mask("xx abcdef", cut=True) == "xx ***"


def test_only_text_without_the_key_or_any_escape_is_taken_as_free_of_references() -> None:
    assert not may_reference_secrets('{"function":"zephyr.noop"}')
    assert not may_reference_secrets("")
    assert may_reference_secrets('{"k": {"$secret": "TOKEN"}}')
    escaped = '{"k": {"\\u0024secret": "TOKEN"}}'  # decodes to a reference without spelling it
    assert may_reference_secrets(escaped)
    assert resolve(json.loads(escaped), {"ZEPHYR_SECRET_TOKEN": "v"})[0] == {"k": "v"}


def test_the_shared_empty_masker_masks_nothing() -> None:
    assert not NO_SECRETS
    assert NO_SECRETS.mask("anything", cut=True) == "anything"


def test_derived_forms_of_a_short_secret_do_not_mask_ordinary_text() -> None:
    masker = Masker(["ab\ncd"])  # lines and encodings of 2 characters would match anything
    assert masker.mask("ab and cd, YWI=, ab%0Acd") == "ab and cd, YWI=, ***"
    assert Masker(["long-enough-secret"]).mask("bG9uZy1lbm91Z2gtc2VjcmV0") == "***"
